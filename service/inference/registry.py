"""Model registry: loads and validates MONAI bundle folders from ``models/`` once, at start-up.

A bundle is a folder (its name is the model's name) holding:

- ``configs/metadata.json``: MONAI bundle metadata plus a ``vigil`` section (kind, labels,
  input size, layer to explain, preprocessing note, disclaimer, sha256 of the weights);
- ``configs/inference.json``: a MONAI bundle config whose ``network_def`` builds the network and
  whose ``preprocessing`` turns a 2D float image (display-oriented: higher = brighter, any size)
  into the network's ``(C, H, W)`` input; an optional ``postprocessing`` maps one ``(C, H, W)``
  network output to probabilities;
- ``models/model.pt``: the network's ``state_dict`` (loaded with ``weights_only=True``);
- ``docs/README.md``: the model card.

Every problem is a ``BundleError`` whose message names the bundle and what is wrong. Note that
``inference.json`` can run Python expressions (``$...``): bundles are code, install trusted ones.
Pure: no web framework, no database.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

from service.inference.errors import BundleError, ModelUnavailable
from service.inference.fast_transforms import with_fast_transforms
from service.log_config import get_logger

log = get_logger(__name__)

METADATA_FILE = "configs/metadata.json"
INFERENCE_FILE = "configs/inference.json"
WEIGHTS_FILE = "models/model.pt"
MODEL_CARD_FILE = "docs/README.md"
REQUIRED_FILES = (METADATA_FILE, INFERENCE_FILE, WEIGHTS_FILE, MODEL_CARD_FILE)

# The fields MONAI's bundle metadata schema requires, and the type each must have.
MONAI_FIELDS: dict[str, type | tuple[type, ...]] = {
    "version": str,
    "changelog": dict,
    "monai_version": str,
    "pytorch_version": str,
    "numpy_version": str,
    "required_packages_version": dict,
    "task": str,
    "description": str,
    "authors": (str, list),
    "copyright": str,
    "network_data_format": dict,
}
# Vigil's own section of metadata.json.
VIGIL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "labels": list,
    "input_size": list,
    "preprocessing": str,
    "disclaimer": str,
    "weights_sha256": str,
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A small, oddly shaped image for the start-up dry run: catches preprocessing that assumes a size.
_DRY_RUN_SHAPE = (70, 53)


class ModelKind(StrEnum):
    """What a bundle's network predicts, which decides how the service runs it."""

    LUNG_SEGMENTER = "lung-segmenter"
    CLASSIFIER = "classifier"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A validated bundle: identity, labels, and the network in eval mode on the CPU."""

    name: str
    version: str
    sha256: str
    kind: ModelKind
    labels: tuple[str, ...]
    disclaimer: str
    input_size: tuple[int, int]
    explain_layer: str | None
    preprocessing_note: str
    network: torch.nn.Module
    path: Path
    metadata: Mapping[str, Any]
    _preprocess: Callable[[Any], Any]
    _postprocess: Callable[[Any], Any] | None

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """Return the network input ``(C, H, W)`` float32 for a 2D display-oriented image."""
        return _plain_tensor(self._preprocess(np.asarray(image, dtype=np.float32)))

    def postprocess(self, output: torch.Tensor) -> torch.Tensor:
        """Return probabilities for one ``(C, H, W)`` network output (identity if none set)."""
        if self._postprocess is None:
            return output
        return _plain_tensor(self._postprocess(output))


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks (weights can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundle(path: Path) -> LoadedModel:
    """Return the bundle at ``path`` loaded and validated; raise ``BundleError`` otherwise."""
    path = Path(path)
    name = path.name
    if not path.is_dir():
        raise BundleError(f"{name}: bundle folder {path} does not exist")
    missing = [rel for rel in REQUIRED_FILES if not (path / rel).is_file()]
    if missing:
        raise BundleError(f"{name}: missing {', '.join(missing)}")
    metadata = _read_json(name, path / METADATA_FILE)
    vigil = _check_metadata(name, metadata)
    kind = ModelKind(vigil["kind"])

    actual = sha256_of(path / WEIGHTS_FILE)
    expected = vigil["weights_sha256"]
    if actual != expected:
        raise BundleError(f"{name}: {WEIGHTS_FILE} sha256 is {actual} but metadata says {expected}")

    parser = ConfigParser(_read_json(name, path / INFERENCE_FILE))
    network = _build(name, parser, "network_def")
    if not isinstance(network, torch.nn.Module):
        raise BundleError(f"{name}: {INFERENCE_FILE} network_def is not a torch module")
    _load_weights(name, network, path / WEIGHTS_FILE)
    network.to("cpu").eval()
    preprocess = with_fast_transforms(_build(name, parser, "preprocessing"))
    postprocess = _build(name, parser, "postprocessing") if "postprocessing" in parser else None

    explain_layer = vigil.get("explain_layer")
    if kind is ModelKind.CLASSIFIER:
        if not isinstance(explain_layer, str) or not explain_layer:
            raise BundleError(f"{name}: {METADATA_FILE} vigil.explain_layer is required")
        if explain_layer not in dict(network.named_modules()):
            raise BundleError(f"{name}: explain_layer '{explain_layer}' is not a network layer")
    model = LoadedModel(
        name=name,
        version=metadata["version"],
        sha256=actual,
        kind=kind,
        labels=tuple(vigil["labels"]),
        disclaimer=vigil["disclaimer"],
        input_size=(vigil["input_size"][0], vigil["input_size"][1]),
        explain_layer=explain_layer if isinstance(explain_layer, str) else None,
        preprocessing_note=vigil["preprocessing"],
        network=network,
        path=path,
        metadata=metadata,
        _preprocess=preprocess,
        _postprocess=postprocess,
    )
    _dry_run(model)
    return model


class ModelRegistry:
    """The bundles found in a models folder, each loaded once; broken ones are kept as reasons."""

    def __init__(self, models: Mapping[str, LoadedModel], failures: Mapping[str, str]) -> None:
        self._models = dict(models)
        self._failures = dict(failures)

    @classmethod
    def scan(cls, models_dir: Path) -> ModelRegistry:
        """Return a registry of every bundle folder in ``models_dir`` (none if it is absent)."""
        models: dict[str, LoadedModel] = {}
        failures: dict[str, str] = {}
        if not models_dir.is_dir():
            log.warning("models.folder_missing", path=str(models_dir))
            return cls(models, failures)
        for folder in sorted(models_dir.iterdir()):
            if not folder.is_dir() or folder.name.startswith((".", "_")):
                continue
            try:
                model = load_bundle(folder)
            except BundleError as exc:
                # One broken bundle must not stop the service from serving the others.
                failures[folder.name] = exc.message
                log.error("models.bundle_invalid", model=folder.name, reason=exc.message)
                continue
            models[model.name] = model
            log.info("models.loaded", model=model.name, version=model.version, sha256=model.sha256)
        return cls(models, failures)

    @property
    def failures(self) -> dict[str, str]:
        """Return the bundles that failed validation, name → reason."""
        return dict(self._failures)

    def get(self, name: str) -> LoadedModel:
        """Return the loaded model called ``name``; ``ModelUnavailable`` if there is none."""
        model = self._models.get(name)
        if model is not None:
            return model
        if name in self._failures:
            raise ModelUnavailable(f"model {name} is unavailable: {self._failures[name]}")
        raise ModelUnavailable(f"no model called {name}", status_code=404)

    def list(self) -> builtins.list[LoadedModel]:
        """Return the loaded models, sorted by name."""
        return [self._models[name] for name in sorted(self._models)]


def _read_json(name: str, path: Path) -> dict[str, Any]:
    rel = f"{path.parent.name}/{path.name}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{name}: {rel} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{name}: {rel} must hold a JSON object")
    return data


def _check_fields(
    name: str, where: str, data: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]]
) -> None:
    for field, expected in fields.items():
        if field not in data:
            raise BundleError(f"{name}: {METADATA_FILE} has no field '{where}{field}'")
        if not isinstance(data[field], expected):
            wanted = (
                " or ".join(t.__name__ for t in expected)
                if isinstance(expected, tuple)
                else expected.__name__
            )
            raise BundleError(
                f"{name}: {METADATA_FILE} field '{where}{field}' must be {wanted}, "
                f"not {type(data[field]).__name__}"
            )


def _check_metadata(name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Return the metadata's ``vigil`` section once every required field has been checked."""
    _check_fields(name, "", metadata, {**MONAI_FIELDS, "vigil": dict})
    vigil: dict[str, Any] = metadata["vigil"]
    _check_fields(name, "vigil.", vigil, VIGIL_FIELDS)
    kinds = [k.value for k in ModelKind]
    if vigil["kind"] not in kinds:
        raise BundleError(f"{name}: vigil.kind '{vigil['kind']}' is not one of {kinds}")
    labels = vigil["labels"]
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise BundleError(f"{name}: vigil.labels must be a non-empty list of names")
    size = vigil["input_size"]
    if len(size) != 2 or not all(isinstance(n, int) and n > 0 for n in size):
        raise BundleError(f"{name}: vigil.input_size must be [height, width], got {size}")
    if not vigil["disclaimer"].strip():
        raise BundleError(f"{name}: vigil.disclaimer must not be empty")
    if not _SHA256.fullmatch(vigil["weights_sha256"]):
        raise BundleError(f"{name}: vigil.weights_sha256 is not a lowercase hex sha256")
    return vigil


def _build(name: str, parser: ConfigParser, key: str) -> Any:
    if key not in parser:
        raise BundleError(f"{name}: {INFERENCE_FILE} has no '{key}'")
    try:
        return parser.get_parsed_content(key)
    except Exception as exc:  # MONAI raises anything from a user config
        # MONAI chains the real cause (unknown _target_, bad argument) below a generic message.
        cause = exc.__cause__ or exc
        detail = str(exc).splitlines()[0]
        if cause is not exc:
            detail = f"{detail} ({type(cause).__name__}: {str(cause).splitlines()[0]})"
        raise BundleError(f"{name}: {INFERENCE_FILE} cannot build '{key}': {detail}") from exc


def _load_weights(name: str, network: torch.nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling failures have no common type
        raise BundleError(f"{name}: {WEIGHTS_FILE} cannot be read: {exc}") from exc
    if not isinstance(state, Mapping):
        raise BundleError(f"{name}: {WEIGHTS_FILE} must hold a state_dict, not {type(state)}")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # The first lines name the missing/unexpected keys or the shape mismatch.
        detail = " ".join(str(exc).split())[:500]
        raise BundleError(
            f"{name}: {WEIGHTS_FILE} does not match the network in {INFERENCE_FILE}: {detail}"
        ) from exc


def _dry_run(model: LoadedModel) -> None:
    """Run preprocessing and the network once, so a mismatch fails at start-up, not per image."""
    image = np.linspace(0.0, 1.0, _DRY_RUN_SHAPE[0] * _DRY_RUN_SHAPE[1], dtype=np.float32)
    try:
        x = model.preprocess(image.reshape(_DRY_RUN_SHAPE))
    except Exception as exc:  # a user transform can fail any way
        raise BundleError(f"{model.name}: preprocessing fails on a 2D image: {exc}") from exc
    if x.ndim != 3 or tuple(x.shape[1:]) != model.input_size:
        raise BundleError(
            f"{model.name}: preprocessing gives shape {tuple(x.shape)} but "
            f"vigil.input_size says {list(model.input_size)}"
        )
    try:
        with torch.no_grad():
            model.network(x[None])
    except Exception as exc:  # any network error means the bundle is unusable
        raise BundleError(f"{model.name}: network fails on a preprocessed image: {exc}") from exc


def _plain_tensor(value: Any) -> torch.Tensor:
    """Return a plain float32 tensor (MONAI transforms may hand back a MetaTensor)."""
    tensor = torch.as_tensor(value)
    if hasattr(tensor, "as_tensor"):
        tensor = tensor.as_tensor()
    return tensor.to(torch.float32)
