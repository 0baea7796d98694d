"""The measurement report: a Comprehensive SR (TID 1500) of image-level and per-region
probabilities, naming the model (TID 4019) and the source image (TID 1600 image library)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from service.results.local_codes import LOCAL_SCHEME_ITEM, finding_code
from service.results.output_dataset import (
    as_decimal_string,
    pin_volatile_attributes,
    source_header,
    valid_spacing,
)
from service.results.output_identity import MANUFACTURER, OutputIdentity, OutputKind

KIND = OutputKind.MEASUREMENT_REPORT
# Modalities whose library descriptors (TID 1603) highdicom reads without checking.
_PROJECTION_MODALITIES = ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")
_LUNG_ZONE = re.compile(
    r"(?P<side>right|left)\s+(?:(?P<zone>upper|middle|lower)\s+(?:lung\s+)?zone|lung)",
    re.IGNORECASE,
)
_ZONES = {
    "upper": codes.SCT.UpperZoneOfLung,
    "middle": codes.SCT.MiddleZoneOfLung,
    "lower": codes.SCT.LowerZoneOfLung,
    None: codes.SCT.Lung,
}
_SIDES = {"right": codes.SCT.Right, "left": codes.SCT.Left}


def structured_report(
    source: Dataset,
    *,
    findings: Sequence[tuple[str, float]],
    regions: Sequence[tuple[str, float]] = (),
    identity: OutputIdentity,
    region_finding: str | None = None,
) -> Dataset:
    """Return a Comprehensive SR with one measurement group per finding and per region.

    ``findings`` are (finding name, image probability); ``regions`` are (region name,
    probability of ``region_finding``, by default the first finding, in that region). The
    observer is the model as a device; every group references the source image.
    """
    if not findings:
        raise ValueError("a measurement report needs at least one finding")
    for name, probability in [*findings, *regions]:
        _check_probability(name, probability)
    for what, names in (("finding", [n for n, _ in findings]), ("region", [n for n, _ in regions])):
        if len(set(names)) != len(names):
            # Each group's tracking UID derives from its name: repeats would collide.
            raise ValueError(f"{what} names repeat: {names}")
    header = source_header(source)
    algorithm = algorithm_identification(identity)
    source_images = [hd.sr.SourceImageForMeasurementGroup.from_source_image(header)]
    groups = [
        _group(identity, f"image: {name}", name, probability, algorithm, source_images, None)
        for name, probability in findings
    ]
    region_finding = region_finding or findings[0][0]
    groups += [
        _group(
            identity,
            f"region: {region}",
            region_finding,
            probability,
            algorithm,
            source_images,
            finding_site(region),
        )
        for region, probability in regions
    ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=identity.device_uid,
                    name=MANUFACTURER,
                    manufacturer_name=MANUFACTURER,
                    model_name=identity.model_label,
                ),
            )
        ),
        procedure_reported=codes.SCT.PlainRadiography,
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
        referenced_images=[_library_view(header)],
    )
    # highdicom deep-copies and re-parses the whole content tree to check that everything it
    # references is in the evidence: most of this function's time, for a tree whose only
    # reference is the source image, the evidence itself. The document is made around the
    # root container and its first item (the language) and the other items attached after.
    root = report[0]
    items = root.ContentSequence
    root.ContentSequence = items[:1]
    sr = hd.sr.ComprehensiveSR(
        evidence=[header],
        content=root,
        series_instance_uid=identity.series_uid(KIND),
        series_number=identity.series_number(KIND),
        sop_instance_uid=identity.instance_uid(KIND),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=identity.model_name,
        software_versions=identity.model_version,
        series_description=identity.series_description(KIND),
        coding_schemes=[LOCAL_SCHEME_ITEM],
        # Complete, but a machine's word: unverified and preliminary until a clinician reviews.
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.ContentSequence = items
    pin_volatile_attributes(sr, source=header, identity=identity)
    return sr


def algorithm_identification(identity: OutputIdentity) -> hd.sr.AlgorithmIdentification:
    """Return TID 4019 for the model: name, version, and its weights' sha256 as a parameter."""
    return hd.sr.AlgorithmIdentification(
        name=identity.model_name,
        version=identity.model_version,
        parameters=[f"weights sha256 {identity.weights_sha256}"],
        manufacturer=MANUFACTURER,
    )


def finding_site(region: str) -> hd.sr.FindingSite | None:
    """Return the SNOMED finding site of "right upper lung zone", "left lung" and the like.

    Grid cells and other free-form regions have no anatomic code; they are named by the
    group's tracking identifier only.
    """
    match = _LUNG_ZONE.fullmatch(region.strip())
    if match is None:
        return None
    zone = match.group("zone")
    location: Code = _ZONES[zone.lower() if zone else None]
    return hd.sr.FindingSite(anatomic_location=location, laterality=_SIDES[match["side"].lower()])


def _group(
    identity: OutputIdentity,
    label: str,
    finding: str,
    probability: float,
    algorithm: hd.sr.AlgorithmIdentification,
    source_images: list[hd.sr.SourceImageForMeasurementGroup],
    site: hd.sr.FindingSite | None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Return a TID 1501 group holding one probability, tracked by a UID derived from ``label``.

    The finding site belongs to the group (where the finding is), the algorithm to the value
    (what produced it); repeating both at each level would only lengthen the tree.
    """
    measurement = hd.sr.Measurement(
        name=codes.DCM.Probability,
        value=as_decimal_string(probability),  # as stored: the data set in memory is the file's
        unit=codes.UCUM.NoUnits,
        algorithm_id=algorithm,
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=identity.uid(KIND.value, "group", label), identifier=label
        ),
        finding_type=finding_code(finding),
        finding_sites=[site] if site is not None else None,
        measurements=[measurement],
        source_images=source_images,
    )


def _library_view(header: Dataset) -> Dataset:
    """Return the header the image library is built from.

    highdicom describes a projection image by its Patient Orientation and Imager Pixel Spacing
    and fails when either is missing (RG1 has no Imager Pixel Spacing). Then the library gets a
    view whose Modality is not a projection one: the entry keeps modality (coded from the SOP
    class), rows and columns, and leaves out the optional descriptors rather than invent them.
    """
    orientation = header.get("PatientOrientation")
    if header.get("Modality") not in _PROJECTION_MODALITIES or (
        orientation is not None
        and len(orientation) == 2
        and valid_spacing(header, "ImagerPixelSpacing") is not None
    ):
        return header
    view = Dataset()
    view.update(header)
    view.Modality = "OT"
    return view


def _check_probability(name: str, probability: float) -> None:
    if not 0.0 <= float(probability) <= 1.0:  # also refuses NaN
        raise ValueError(f"probability of {name!r} is {probability}, not in [0, 1]")
