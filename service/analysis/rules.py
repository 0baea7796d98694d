"""Which images Vigil analyses: what any analysis needs, and what triggers one on arrival."""

from __future__ import annotations

from dataclasses import dataclass

from service.settings import Settings

_GREYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
# Projection radiographs: what the models are made for. Vigil's own outputs (Secondary
# Capture, Parametric Map, SR) are never analysed again.
RADIOGRAPH_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image (for presentation)",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image (for processing)",
}


@dataclass(frozen=True)
class ImageFacts:
    """What the rules look at, taken from the archive's index."""

    sop_class_uid: str
    modality: str
    body_part_examined: str
    view_position: str
    photometric_interpretation: str
    rows: int | None
    columns: int | None
    number_of_frames: int


@dataclass(frozen=True)
class ArrivalRules:
    modalities: frozenset[str]
    body_parts: frozenset[str]
    view_positions: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> ArrivalRules:
        return cls(
            modalities=frozenset(m.upper() for m in settings.analyse_modalities),
            body_parts=frozenset(b.upper() for b in settings.analyse_body_parts),
            view_positions=frozenset(v.upper() for v in settings.analyse_view_positions),
        )


def why_not_analysable(image: ImageFacts) -> str | None:
    """Return why no model can analyse this image, or None when it can be analysed."""
    if image.sop_class_uid not in RADIOGRAPH_SOP_CLASSES:
        return f"SOP class {image.sop_class_uid} is not a projection radiograph (CR or DX)"
    if image.photometric_interpretation not in _GREYSCALE:
        return f"not a greyscale image ({image.photometric_interpretation or 'unknown'})"
    if image.number_of_frames != 1:
        return f"{image.number_of_frames} frames; only single-frame images are analysed"
    if not image.rows or not image.columns or min(image.rows, image.columns) < 32:
        return "image too small to analyse (under 32 pixels on a side)"
    return None


def why_not_on_arrival(image: ImageFacts, rules: ArrivalRules) -> str | None:
    """Return why an arriving image is not analysed automatically, or None when it is."""
    if image.modality.upper() not in rules.modalities:
        return f"modality {image.modality or '(none)'} is not in the arrival rules"
    if image.body_part_examined.upper() not in rules.body_parts:
        return f"body part {image.body_part_examined or '(none)'} is not in the arrival rules"
    if image.view_position.upper() not in rules.view_positions:
        return f"view position {image.view_position or '(none)'} is not in the arrival rules"
    return why_not_analysable(image)
