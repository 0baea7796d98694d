"""The lung-field stage runs in the helper process and gives what the server would itself;
a helper that cannot use the server's model, or no helper at all, still gives the lungs."""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from service.analysis import lung_fields
from service.analysis.helper_process import HelperProcess
from service.analysis.lung_fields import lung_labels, start_lung_fields
from service.dicom.render import display_image
from service.inference.registry import LoadedModel, ModelRegistry
from service.results.resize import fit_within
from service.training.phantom.generator import PhantomOptions, generate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return ModelRegistry.scan(REPO / "models").get("vigil-lungs")


@pytest.fixture(scope="module")
def working(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("lung-fields")
    generate(PhantomOptions(n=1, seed=5, size=1024), out)
    ds = pydicom.dcmread(next((out / "dicom").glob("*.dcm")))
    return fit_within(display_image(ds, ds.pixel_array), 512)


@pytest.fixture
def helper() -> Iterator[HelperProcess]:
    started = HelperProcess()
    yield started
    started.close()


def test_the_helper_finds_and_saves_the_lungs_the_server_would(
    helper: HelperProcess, model: LoadedModel, working: np.ndarray, tmp_path: Path
) -> None:
    saved = tmp_path / "lungs.npy"
    result = start_lung_fields(helper, model, working, saved)()
    expected = lung_labels(model, working)
    assert expected is not None and set(np.unique(expected)) == {0, 1, 2}
    assert result.labels is not None and np.array_equal(result.labels, expected)
    assert np.array_equal(np.load(saved), expected)  # where the lungs overlay is drawn from
    assert result.elapsed_ms > 0


def test_no_lungs_found_saves_nothing(
    model: LoadedModel, working: np.ndarray, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    monkeypatch.setattr(lung_fields, "lung_labels", lambda _model, _working: None)
    result = start_lung_fields(HelperProcess(), model, working, tmp_path / "lungs.npy")()
    assert result.labels is None and not (tmp_path / "lungs.npy").exists()


def test_weights_changed_since_the_server_loaded_them_are_not_used_by_the_helper(
    helper: HelperProcess, model: LoadedModel, working: np.ndarray, tmp_path: Path
) -> None:
    # The server validated other weights than the helper finds on disk: the helper refuses
    # and the server segments with its own model.
    other = dataclasses.replace(model, sha256="f" * 64)
    refused = helper.submit(
        lung_fields.lung_labels_beside,
        lung_fields.LungRequest(model.path, "f" * 64, working, None),
    )
    with pytest.raises(Exception, match="not the ones the server loaded"):
        refused()
    result = start_lung_fields(helper, other, working, tmp_path / "lungs.npy")()
    expected = lung_labels(model, working)
    assert result.labels is not None and expected is not None
    assert np.array_equal(result.labels, expected)


def test_without_a_helper_the_servers_own_model_is_used(
    model: LoadedModel, working: np.ndarray, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    monkeypatch.setattr(lung_fields, "_models", {})
    loads: list[Path] = []
    monkeypatch.setattr(lung_fields, "load_bundle", lambda path: loads.append(path))
    result = start_lung_fields(HelperProcess(), model, working, tmp_path / "lungs.npy")()
    assert result.labels is not None
    assert loads == []  # not loaded a second time in this process
