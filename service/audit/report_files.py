"""A report's files: ``report.html`` (with ``report.css`` and ``gallery/*.png``),
``report.json`` and ``report.csv``, written atomically into the report's folder."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.analysis.results_files import write_atomically
from service.audit.report_cases import ReportCase
from service.audit.report_gallery import case_reference, gallery_png
from service.audit.report_html import STYLESHEET, render_report

REPORT_FILES = ("report.html", "report.json", "report.csv", "report.css")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GALLERY_DIR = "gallery"
CSV_COLUMNS = (
    "attribute", "group", "n", "audited", "flagged", "flag_rate", "flag_rate_low",
    "flag_rate_high", "positive_calls", "flagged_positive", "flag_rate_positive", "reviewed",
    "auroc", "ece", "median_relevant_share", "median_border_share", "median_burned_in_share",
    "tested", "flag_rate_difference", "flag_rate_ci_low", "flag_rate_ci_high", "flag_rate_q",
    "highlighted", "highlighted_outcomes",
)  # fmt: skip


def write_report(
    folder: Path,
    *,
    report_id: uuid.UUID,
    report: dict[str, Any],
    meta: dict[str, Any],
    cases: list[ReportCase],
    results_root: Path,
    on_image: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Write every file of a report and return the JSON document written."""
    identified = bool(meta.get("identified"))
    gallery = [
        _gallery_item(folder, report_id, cases[i], results_root, identified, on_image)
        for i in report.get("gallery", [])
    ]
    document = {**meta, "report": {**report, "gallery": gallery}}
    write_atomically(
        folder / "report.json", json.dumps(document, indent=1, default=str).encode("utf-8")
    )
    write_atomically(folder / "report.csv", report_csv(report).encode("utf-8"))
    write_atomically(folder / "report.css", STYLESHEET.read_bytes())
    page = render_report(report, meta=meta, gallery=gallery)
    write_atomically(folder / "report.html", page.encode("utf-8"))
    return document


def report_csv(report: dict[str, Any]) -> str:
    """Return the group table as CSV: one row per group of each attribute (only the header
    when no analyses match)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for section in report.get("attributes", []):
        for g in section["groups"]:
            writer.writerow(_cells(*_group_row(section["attribute"], g)))
    return out.getvalue()


def _group_row(attribute: str, g: dict[str, Any]) -> list[Any]:
    """Return one group's CSV values in ``CSV_COLUMNS`` order."""
    test = next((t for t in g["tests"] if t["outcome"] == "flag_rate"), None)
    highlighted = [t["outcome"] for t in g["tests"] if t["highlighted"]]
    tested = [test[k] for k in ("difference", "ci_low", "ci_high", "q")] if test else [None] * 4
    return [
        attribute,
        g["value"],
        g["n"],
        g["audited"],
        g["flagged"],
        g["flag_rate"]["rate"],
        g["flag_rate"]["low"],
        g["flag_rate"]["high"],
        g["positive_calls"],
        g["flagged_positive"],
        g["flag_rate_positive"]["rate"],
        g["reviewed"],
        g["auroc"],
        g["ece"],
        g["metrics"]["relevant_share"]["median"],
        g["metrics"]["border_share"]["median"],
        g["metrics"]["burned_in_share"]["median"],
        bool(g["tests"]),
        *tested,
        g["highlighted"],
        ";".join(highlighted),
    ]


def _cells(*values: Any) -> list[str]:
    """Return CSV cells: empty for None, lower-case booleans, text that a spreadsheet would
    take for a formula quoted (see ``_inert``)."""
    return [_cell(v) for v in values]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return _inert(value) if isinstance(value, str) else str(value)


def _inert(text: str) -> str:
    """Return text that no spreadsheet runs: a group's value comes from the images' own
    attributes (an institution or station name any sender chooses), and a cell starting
    with = + - @ (or a tab or carriage return) opens as a formula in Excel or LibreOffice
    (CSV injection): such a cell starts with an apostrophe instead."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _gallery_item(
    folder: Path,
    report_id: uuid.UUID,
    case: ReportCase,
    results_root: Path,
    identified: bool,
    on_image: Callable[[], None],
) -> dict[str, Any]:
    """Return a gallery entry, its thumbnail written under ``gallery/`` when the maps exist."""
    ref = case_reference(report_id, case.analysis_id)
    item: dict[str, Any] = {
        "ref": ref,
        "model": f"{case.model_name} {case.model_version}",
        "label": case.label,
        "probability": case.probability,
        "flags": list(case.flag_codes),
        "relevant_share": case.metrics.get("relevant_share"),
        "border_share": case.metrics.get("border_share"),
        "burned_in_share": case.metrics.get("burned_in_share"),
        "counterfactual_change": case.metrics.get("counterfactual_change"),
        "attributes": case.attributes,
        "image": None,
    }
    if identified:
        item["analysis_id"] = str(case.analysis_id)
        item["identifiers"] = asdict(case.identifiers) if case.identifiers else None
    drawn = gallery_png(
        results_root, case.analysis_id, boxes=list(case.boxes), deidentify=not identified
    )
    if drawn is not None:
        png, width, height = drawn
        write_atomically(folder / GALLERY_DIR / f"{ref}.png", png)
        item.update(image=f"{GALLERY_DIR}/{ref}.png", width=width, height=height)
    on_image()
    return item
