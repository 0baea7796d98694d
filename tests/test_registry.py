"""Model bundles: written by training, loaded and validated by the registry, with clear errors."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.networks.nets import UNet

from service.inference.errors import BundleError, ModelUnavailable
from service.inference.registry import (
    LoadedModel,
    ModelKind,
    ModelRegistry,
    load_bundle,
    sha256_of,
)
from service.training.bundle import BundleInfo, write_bundle
from service.training.lung_card import lung_bundle_info
from service.training.lungs import inference_config

SIZE = 32
TINY = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


def tiny_network(seed: int = 0, channels: tuple[int, int] = (4, 8)) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=channels,
        strides=(2,),
        num_res_units=0,
    )


def tiny_config() -> dict[str, Any]:
    config = inference_config(SIZE)
    config["network_def"].update(TINY)
    return config


def tiny_info(**changes: Any) -> BundleInfo:
    return replace(lung_bundle_info("0.1.0", SIZE, with_phantoms=False), **changes)


def write_tiny(folder: Path, network: torch.nn.Module | None = None) -> LoadedModel:
    return write_bundle(
        folder,
        network=network or tiny_network(),
        inference_config=tiny_config(),
        info=tiny_info(),
        model_card="# tiny\n\nA test bundle.\n",
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    write_tiny(tmp_path / "vigil-tiny")
    return tmp_path / "vigil-tiny"


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def error_of(path: Path) -> str:
    with pytest.raises(BundleError) as caught:
        load_bundle(path)
    return caught.value.message


def test_round_trip_gives_the_same_outputs_and_identity(tmp_path: Path) -> None:
    network = tiny_network(seed=3).eval()
    loaded = write_tiny(tmp_path / "vigil-tiny", network)
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(loaded.network(x), network(x))
    assert loaded.name == "vigil-tiny"
    assert loaded.version == "0.1.0"
    assert loaded.sha256 == sha256_of(tmp_path / "vigil-tiny/models/model.pt")
    assert loaded.kind is ModelKind.LUNG_SEGMENTER
    assert loaded.labels == ("lung",)
    assert loaded.input_size == (SIZE, SIZE)
    assert "not for clinical use" in loaded.disclaimer
    assert not loaded.network.training
    assert all(p.device.type == "cpu" for p in loaded.network.parameters())


def test_metadata_has_the_monai_and_vigil_fields(bundle: Path) -> None:
    metadata = json.loads((bundle / "configs/metadata.json").read_text())
    for field in (
        "schema",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "task",
        "data_source",
        "intended_use",
        "image_classes",
        "label_classes",
    ):
        assert metadata[field]
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == [SIZE, SIZE] and image["num_channels"] == 1
    assert metadata["vigil"]["weights_sha256"] == sha256_of(bundle / "models/model.pt")


def test_preprocessing_accepts_any_size_and_gives_the_input_size(bundle: Path) -> None:
    loaded = load_bundle(bundle)
    x = loaded.preprocess(torch.rand(301, 177).numpy() * 4000)
    assert x.shape == (1, SIZE, SIZE) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def test_missing_folder(tmp_path: Path) -> None:
    assert "vigil-gone: bundle folder" in error_of(tmp_path / "vigil-gone")


def test_missing_weights(bundle: Path) -> None:
    (bundle / "models/model.pt").unlink()
    assert error_of(bundle) == "vigil-tiny: missing models/model.pt"


def test_missing_model_card(bundle: Path) -> None:
    (bundle / "docs/README.md").unlink()
    assert error_of(bundle) == "vigil-tiny: missing docs/README.md"


def test_missing_metadata_field(bundle: Path) -> None:
    edit_json(bundle / "configs/metadata.json", lambda m: m.pop("task"))
    assert error_of(bundle) == "vigil-tiny: configs/metadata.json has no field 'task'"


def test_missing_vigil_field(bundle: Path) -> None:
    edit_json(bundle / "configs/metadata.json", lambda m: m["vigil"].pop("disclaimer"))
    assert "has no field 'vigil.disclaimer'" in error_of(bundle)


def test_metadata_field_of_the_wrong_type(bundle: Path) -> None:
    edit_json(bundle / "configs/metadata.json", lambda m: m.update(version=1))
    assert "field 'version' must be str, not int" in error_of(bundle)


def test_unknown_kind(bundle: Path) -> None:
    edit_json(bundle / "configs/metadata.json", lambda m: m["vigil"].update(kind="detector"))
    assert "vigil.kind 'detector' is not one of" in error_of(bundle)


def test_metadata_that_is_not_json(bundle: Path) -> None:
    (bundle / "configs/metadata.json").write_text("{not json")
    assert "vigil-tiny: configs/metadata.json is not valid JSON" in error_of(bundle)


def test_wrong_sha256(bundle: Path) -> None:
    recorded = json.loads((bundle / "configs/metadata.json").read_text())["vigil"]["weights_sha256"]
    torch.save(tiny_network(seed=9).state_dict(), bundle / "models/model.pt")
    actual = sha256_of(bundle / "models/model.pt")
    assert error_of(bundle) == (
        f"vigil-tiny: models/model.pt sha256 is {actual} but metadata says {recorded}"
    )


def test_unknown_target_in_inference_config(bundle: Path) -> None:
    edit_json(
        bundle / "configs/inference.json",
        lambda c: c["network_def"].update({"_target_": "monai.networks.nets.NoSuchNet"}),
    )
    message = error_of(bundle)
    assert "vigil-tiny: configs/inference.json cannot build 'network_def'" in message
    assert "monai.networks.nets.NoSuchNet" in message


def test_state_dict_that_does_not_fit_the_network(bundle: Path) -> None:
    edit_json(
        bundle / "configs/inference.json", lambda c: c["network_def"].update(channels=[4, 16])
    )
    message = error_of(bundle)
    assert "vigil-tiny: models/model.pt does not match the network" in message
    assert "size mismatch" in message


def test_input_size_that_preprocessing_does_not_give(bundle: Path) -> None:
    edit_json(bundle / "configs/metadata.json", lambda m: m["vigil"].update(input_size=[64, 64]))
    assert "preprocessing gives shape (1, 32, 32) but vigil.input_size says [64, 64]" in (
        error_of(bundle)
    )


def test_classifier_must_name_a_layer_to_explain(tmp_path: Path) -> None:
    def write(explain_layer: str | None) -> None:
        write_bundle(
            tmp_path / "vigil-cls",
            network=tiny_network(),
            inference_config=tiny_config(),
            info=tiny_info(kind=ModelKind.CLASSIFIER, explain_layer=explain_layer),
            model_card="# classifier\n",
        )

    with pytest.raises(BundleError, match=r"vigil-cls: .*vigil\.explain_layer is required"):
        write(None)
    with pytest.raises(
        BundleError, match=re.escape("explain_layer 'model.9' is not a network layer")
    ):
        write("model.9")
    write("model.1")
    assert load_bundle(tmp_path / "vigil-cls").explain_layer == "model.1"


def test_a_failed_write_keeps_the_previous_bundle(bundle: Path) -> None:
    before = sha256_of(bundle / "models/model.pt")
    with pytest.raises(BundleError, match=re.escape("vigil-tiny: models/model.pt does not match")):
        write_bundle(
            bundle,
            network=tiny_network(channels=(4, 16)),
            inference_config=tiny_config(),
            info=tiny_info(),
            model_card="# broken\n",
        )
    assert load_bundle(bundle).sha256 == before
    assert [p.name for p in bundle.parent.iterdir()] == ["vigil-tiny"]


def test_registry_lists_good_bundles_and_reports_broken_ones(bundle: Path) -> None:
    models = bundle.parent
    shutil.copytree(bundle, models / "vigil-broken")
    (models / "vigil-broken/models/model.pt").unlink()
    (models / "README.md").write_text("not a bundle")

    registry = ModelRegistry.scan(models)

    assert [m.name for m in registry.list()] == ["vigil-tiny"]
    assert registry.get("vigil-tiny") is registry.get("vigil-tiny")  # loaded once
    assert registry.failures == {"vigil-broken": "vigil-broken: missing models/model.pt"}
    with pytest.raises(ModelUnavailable) as broken:
        registry.get("vigil-broken")
    assert broken.value.status_code == 503
    assert "missing models/model.pt" in broken.value.message
    with pytest.raises(ModelUnavailable) as unknown:
        registry.get("vigil-nothing")
    assert unknown.value.status_code == 404


def test_registry_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert ModelRegistry.scan(tmp_path / "nowhere").list() == []
