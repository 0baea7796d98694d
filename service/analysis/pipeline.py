"""The analysis pipeline, one function per stage, each timed:

decode → preprocess → classify → explain → maps saved → burned-in marks → lungs → regions →
measurement report → bias audit → DICOM outputs filed. The helper process (the second core)
works beside them on what needs only the image and the maps: the lung fields, from as soon
as the working copy exists, while the classifier and the explanations run here; then the
picture outputs (Secondary Capture, Parametric Maps), which it also writes and parses ready
for filing. A stage done in the helper has its own time as ``<stage>_beside`` and the time
spent waiting for it as ``<stage>_wait``; ``dicom_outputs`` is the filing of all four
outputs, in one transaction. What crosses to the helper and back is small (paths of the
saved display image and maps, of the prepared files): megabytes through a pipe are slow
while this process's thread holds the GIL.

Everything after decoding works on the *working copy*: the display image area-averaged so its
long side is ``WORKING_SIDE`` (the network sees 256² and its cells are 16 input pixels wide,
so nothing finer exists to keep). Every map is brought back to the original image's geometry
at that scale (same field, same orientation, coarser pixels) before anything is measured, and
to its full size when an overlay is drawn, so overlays sit on the anatomy they describe.
Results files are written idempotently (same content, same names): a job run twice leaves
one set of results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array

from service.analysis.forwarding import forward_outputs
from service.analysis.helper_process import Pending
from service.analysis.lung_fields import LungResult, start_lung_fields
from service.analysis.methods import ExplanationMethod
from service.analysis.output_pictures import (
    PictureInputs,
    Pictures,
    PicturesFailed,
    build_pictures,
)
from service.analysis.outputs import (
    incoming_place,
    measurement_report,
    output_files,
    output_identity,
    store_outputs,
)
from service.analysis.overlay_images import save_display, save_maps
from service.analysis.prepared_files import PreparedObject, discard
from service.analysis.results_files import OverlayKind, raw_map_path
from service.analysis.runtime import AnalysisServices
from service.analysis.tasks import AnalysisFailed, Job
from service.audit.bias_metrics import ImageMarks, image_marks
from service.audit.flags import FlagThresholds
from service.audit.per_image import audit_image
from service.dicom.render import display_image
from service.inference.errors import ModelUnavailable
from service.inference.explain import ExplainMethod, explain
from service.inference.geometry import InputGeometry, ResizeMode
from service.inference.region_classifier import RegionOutput
from service.inference.registry import LoadedModel, ModelKind
from service.log_config import get_logger
from service.results.output_dataset import source_header
from service.results.regions import grid_regions, lung_zones, region_table
from service.results.resize import fit_within

log = get_logger(__name__)

# The working copy's long side (pixels): the network input, the maps, the lung fields, the
# region table and the bias audit all use it.
WORKING_SIDE = 512


@dataclass
class Timings:
    stages_ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages_ms[name] = round((time.perf_counter() - started) * 1000, 1)


@dataclass
class Decoded:
    source: Dataset
    display: np.ndarray  # uint8, rows × cols, bright = white (MONOCHROME1 already inverted)


def analyse(job: Job, services: AnalysisServices) -> dict[str, Any]:
    """Run every stage for one image and return the results to store with the analysis."""
    timings = Timings()
    model = _classifier(services, job)
    root = services.runtime.settings.results_path
    with timings.stage("decode"):
        decoded = decode(job)
    with timings.stage("save_display"):  # overlays are drawn on it; the helper reads it
        display_path = save_display(root, job.analysis_id, decoded.display)
    with timings.stage("preprocess"):
        working = fit_within(decoded.display, WORKING_SIDE)
        # The lung fields need only the working copy: the helper process segments them on the
        # second core while the classifier and the explanations run here.
        lung_job = start_lungs(
            services, working, raw_map_path(root, job.analysis_id, OverlayKind.LUNGS.value)
        )
        x, geometry = preprocess(model, working)
    with timings.stage("classify"):
        probabilities, probability_map = classify(model, x, geometry)
    label_index = int(np.argmax(probabilities))
    explanations: dict[ExplanationMethod, np.ndarray] = {}
    for method in job.methods:
        with timings.stage(f"explain_{method.value}"):
            explanations[method] = explain_map(model, x, geometry, method, label_index)
    gradcam = explanations.get(ExplanationMethod.GRADCAM)
    identity = output_identity(job, model)
    with timings.stage("save_maps"):
        # Overlay images are drawn from these after the results are stored (or on first view).
        map_paths = save_maps(
            root,
            job.analysis_id,
            {
                OverlayKind.PROBABILITY: probability_map,
                **{OverlayKind(m.value): v for m, v in explanations.items()},
            },
        )
    # The pictures (Secondary Capture, Parametric Maps) need only the image and the maps:
    # the helper builds them and prepares their files once it has the lungs.
    pictures_job = services.helper.submit(
        build_pictures,
        PictureInputs(
            header=source_header(decoded.source),
            display=display_path,
            probability_map=map_paths[OverlayKind.PROBABILITY],
            gradcam=map_paths.get(OverlayKind.GRADCAM),
            identity=identity,
            place=incoming_place(services),
        ),
    )
    report: PreparedObject | None = None
    pictures: Pictures | None = None
    try:
        marks = None
        if gradcam is not None:
            with timings.stage("image_marks"):  # the audit's look at the image alone
                marks = image_marks(working)
        with timings.stage("lungs_wait"):
            lung_result = lung_job() if lung_job is not None else None
        lung_labels = lung_result.labels if lung_result is not None else None
        if lung_result is not None:
            timings.stages_ms["lungs_beside"] = lung_result.elapsed_ms
        with timings.stage("regions"):
            regions = regions_of(probability_map, lung_labels)
        findings = [(label, float(p)) for label, p in zip(model.labels, probabilities, strict=True)]
        with timings.stage("measurement_report"):
            report = measurement_report(
                services, decoded, identity=identity, findings=findings, regions=regions
            )
        bias = None
        if gradcam is not None:
            with timings.stage("bias_audit"):
                bias = audit(
                    services,
                    model,
                    decoded,
                    working,
                    gradcam,
                    lung_labels,
                    probabilities,
                    label_index,
                    marks,
                )
        with timings.stage("dicom_pictures_wait"):
            pictures = wait_for_pictures(pictures_job)
        timings.stages_ms["dicom_pictures_beside"] = pictures.elapsed_ms
        with timings.stage("dicom_outputs"):
            outputs = store_outputs(
                services, job, {**pictures.objects, "measurement_report": report}
            )
    except BaseException:
        discard_unfiled(report, pictures, pictures_job)
        raise
    overlays = [kind.value for kind in map_paths]
    if lung_labels is not None:  # saved where the overlay is drawn from
        overlays.append(OverlayKind.LUNGS.value)
    forwarding = None
    if services.runtime.settings.forward_url:
        with timings.stage("forward"):
            forwarding = forward_outputs(
                services.runtime.settings, output_files(services, outputs.values())
            )
    return {
        "disclaimer": model.disclaimer,
        "forwarding": forwarding,
        "findings": [{"label": label, "probability": p} for label, p in findings],
        "regions": [{"name": name, "probability": p} for name, p in regions],
        "region_source": "lung zones" if lung_labels is not None else "grid",
        "overlays": overlays,
        "outputs": outputs,
        "timings_ms": timings.stages_ms,
        "bias": bias,
    }


def _classifier(services: AnalysisServices, job: Job) -> LoadedModel:
    try:
        model = services.models.get(job.model_name)
    except ModelUnavailable as exc:
        raise AnalysisFailed(exc.message) from exc
    if model.sha256 != job.model_sha256:
        raise AnalysisFailed(
            f"model {job.model_name} changed since the analysis was requested "
            f"(weights {model.sha256[:12]}…, requested {job.model_sha256[:12]}…); request again"
        )
    if model.kind is not ModelKind.CLASSIFIER:
        raise AnalysisFailed(f"model {model.name} is a {model.kind.value}, not a classifier")
    return model


def decode(job: Job) -> Decoded:
    """Return the source dataset and its display image (modality LUT, VOI, MONOCHROME1)."""
    try:
        source = pydicom.dcmread(job.image_path, force=True)
        pixels = pixel_array(source, index=0)
        display = display_image(source, pixels)
    except FileNotFoundError as exc:
        raise AnalysisFailed(
            "the instance's file is missing from the archive; tell an admin"
        ) from exc
    except OSError as exc:  # its text names the server's path: the reason does not
        raise AnalysisFailed(
            f"the instance's file cannot be read ({exc.strerror or type(exc).__name__}); "
            "tell an admin"
        ) from exc
    except Exception as exc:
        raise AnalysisFailed(f"the image cannot be decoded: {type(exc).__name__}: {exc}") from exc
    if display.ndim != 2:
        raise AnalysisFailed("only greyscale images can be analysed")
    return Decoded(source=source, display=display)


def preprocess(model: LoadedModel, display: np.ndarray) -> tuple[torch.Tensor, InputGeometry]:
    """Return the network input (1, C, H, W) and how it maps back to ``display``'s geometry.

    Pass the working copy: the preprocessing's area resize from it gives the input a 2k image
    would (area averages compose), and its percentiles cost a sixteenth as much.
    """
    x = model.preprocess(display.astype(np.float32))
    mode = ResizeMode(model.metadata.get("vigil", {}).get("resize_mode", ResizeMode.RESIZE))
    geometry = InputGeometry.fit(display.shape, model.input_size, mode)
    return x[None], geometry


def classify(
    model: LoadedModel, x: torch.Tensor, geometry: InputGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """Return image probabilities per label and the top label's probability map (at the
    geometry's original, the working copy), both from one forward pass."""
    with torch.no_grad():
        output = model.network(x)
    if not isinstance(output, RegionOutput):
        raise AnalysisFailed(f"model {model.name} does not give a per-region map")
    probabilities = torch.sigmoid(output.image_logits[0]).numpy()
    label_index = int(np.argmax(probabilities))
    cells = torch.sigmoid(output.region_logits[:, label_index : label_index + 1])
    at_input = F.interpolate(cells, size=geometry.input_shape, mode="bilinear", align_corners=False)
    return probabilities, geometry.to_original(at_input[0, 0].numpy())


def explain_map(
    model: LoadedModel,
    x: torch.Tensor,
    geometry: InputGeometry,
    method: ExplanationMethod,
    label_index: int,
) -> np.ndarray:
    """Return one explanation map, raw (no display scaling), at the working copy's geometry."""
    layer = model.explain_layer or "backbone.features"
    values = explain(
        ExplainMethod(method.value), model.network, x, layer=layer, label_index=label_index
    )
    return geometry.to_original(values.reshape(geometry.input_shape))


def wait_for_pictures(pictures_job: Pending[Pictures]) -> Pictures:
    """Return the helper's prepared pictures; a picture that cannot be filed fails the
    analysis with the archive's reason."""
    try:
        return pictures_job()
    except PicturesFailed as exc:
        raise AnalysisFailed(f"a result object could not be filed: {exc}") from exc


def discard_unfiled(
    report: PreparedObject | None,
    pictures: Pictures | None,
    pictures_job: Pending[Pictures],
) -> None:
    """Remove the prepared files of an analysis that stopped before filing them: the report's,
    and the pictures' once the helper has written them (unless they were never started)."""
    if pictures is None and not pictures_job.cancel():
        try:
            pictures = pictures_job()
        except Exception:  # noqa: BLE001 - it failed too: it left no files
            pictures = None
    discard([*([report] if report else []), *(pictures.objects.values() if pictures else [])])


def start_lungs(
    services: AnalysisServices, working: np.ndarray, save_to: Path
) -> Callable[[], LungResult] | None:
    """Start the lung-field stage in the helper (labels saved to ``save_to``); None when
    there is no lung model."""
    try:
        model = services.models.get(services.runtime.settings.lung_model)
    except ModelUnavailable as exc:
        log.info("analysis.no_lung_model", reason=exc.message)
        return None
    return start_lung_fields(services.helper, model, working, save_to)


def regions_of(
    probability_map: np.ndarray, lung_labels: np.ndarray | None
) -> list[tuple[str, float]]:
    """Return the region table: lung zones where both lungs were found, else a 3×3 grid."""
    named = (
        lung_zones(lung_labels) if lung_labels is not None else grid_regions(*probability_map.shape)
    )
    return [(name, round(p, 4)) for name, p in region_table(probability_map, named)]


def audit(
    services: AnalysisServices,
    model: LoadedModel,
    decoded: Decoded,
    working: np.ndarray,
    gradcam: np.ndarray,
    lung_labels: np.ndarray | None,
    probabilities: np.ndarray,
    label_index: int,
    marks: ImageMarks | None,
) -> dict[str, Any]:
    """Return the bias audit of this analysis's raw Grad-CAM (see service.audit).

    It runs on the working copy the classifier saw, so the probability to compare with is the
    analysis's own, and the counterfactual re-scores like with like.
    """
    settings = services.runtime.settings

    def rescore(display: np.ndarray) -> float:
        x, geometry = preprocess(model, display)
        return float(classify(model, x, geometry)[0][label_index])

    return audit_image(
        display=working,
        heatmap=gradcam,
        lung_labels=lung_labels,
        burned_in_attribute=str(decoded.source.get("BurnedInAnnotation", "")),
        probability=float(probabilities[label_index]),
        rescore=rescore,
        marks=marks,
        thresholds=FlagThresholds(
            min_relevant_share=settings.audit_min_lung_share,
            max_border_share=settings.audit_max_border_share,
            min_counterfactual_change=settings.audit_min_counterfactual_change,
        ),
    )
