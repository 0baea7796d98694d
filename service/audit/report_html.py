"""The report as one HTML page (plots inline as SVG, the gallery as PNG files beside it).

The page stands alone: it opens from disk, through the API and on the auditor pages alike.
It links its stylesheet (``report.css``, copied beside it) instead of inlining styles, so the
pages' content security policy does not strip them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from service.audit.report_cases import GROUPING_ATTRIBUTES
from service.audit.report_svg import Bar, group_bars_svg, histogram_svg, reliability_svg

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATE = "audit_report.html"
STYLESHEET = WEB_DIR / "static" / "audit-report.css"

METRIC_NAMES = {
    "relevant_share": "Heatmap share in the relevant region (lungs or body)",
    "border_share": "Heatmap share in the outer 5 % border band",
    "burned_in_share": "Heatmap share on burned-in marks (markers, text)",
    "outside_body_share": "Heatmap share outside the body",
    "top_outside_relevant_share": "Hottest 5 % of pixels outside the relevant region",
    "counterfactual_change": "Drop in probability when the outside hot spot is hidden",
}
ATTRIBUTE_NAMES = {
    "Manufacturer": "Manufacturer (0008,0070)",
    "ManufacturerModelName": "Manufacturer's model name (0008,1090)",
    "InstitutionName": "Institution name (0008,0080)",
    "StationName": "Station name (0008,1010)",
    "ViewPosition": "View position (0018,5101)",
    "PatientSex": "Patient's sex (0010,0040)",
    "AgeBand": "Age band (from Patient's Age, 0010,1010)",
    "BurnedInAnnotation": "Burned-in annotation (0028,0301)",
}
OUTCOME_NAMES = {
    "flag_rate": "flag rate",
    "flag_rate_positive": "flag rate among positive calls",
}
DEFINITIONS = (
    "A case is one done analysis of one image by one model version (the newest, when an image "
    "was analysed more than once by the same weights). Dates filter on when the analysis ran "
    "(UTC, both ends included).",
    "Flagged: the per-image bias audit raised at least one flag (outside the lungs, peak on a "
    "marker or text, border, counterfactual). The flag rate counts audited cases (those with "
    "a Grad-CAM).",
    "Positive call: the probability of the analysis's top finding is at least the model's "
    "operating point (from the bundle's inference.json; 0.5 when the bundle is not installed).",
    "Clinician label: from the current (not amended) review decisions. 1 when the clinician's "
    "own finding is the model's finding, 0 for any other finding or 'no finding'; 'uncertain' "
    "decisions are left out. With several reviewers the newest decision counts.",
    "AUROC: Mann–Whitney (ties count half) of the model's probability against the clinician "
    "label, with a 95 % stratified bootstrap interval. Calibration: 10 equal-width bins of "
    "probability, ECE = case-weighted mean |observed rate − mean probability|.",
    "Prevalence-only baseline: every case scored by its group's rate of the outcome (the "
    "clinician label, or the model's positive call); its AUROC is what knowing the group alone "
    "gives. A model whose calls the group alone predicts (AUROC near 1) may be reading the "
    "group, not the anatomy.",
    "Group against the rest: the difference (group − rest) of the flag rate (all audited "
    "cases, and among positive calls) and of the medians of four heatmap shares, with a 95 % "
    "percentile bootstrap interval; p-values from Fisher's exact test (rates) and the "
    "two-sided Mann–Whitney U test (medians); Benjamini–Hochberg q-values over every test in "
    "this report. Only groups with at least 30 cases are tested. A group is highlighted when "
    "q < 0.05 and the interval excludes 0.",
    "Rates carry Wilson 95 % intervals. Medians come with the interquartile range (Q1–Q3).",
)

_environment = Environment(
    loader=FileSystemLoader(WEB_DIR / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


_environment.filters.update(percent=_percent, number=_number)


def render_report(
    report: dict[str, Any], *, meta: dict[str, Any], gallery: list[dict[str, Any]]
) -> str:
    """Return the report page; ``meta`` names the report (id, when, who, filters)."""
    context: dict[str, Any] = {
        "meta": meta,
        "report": report,
        "gallery": gallery,
        "metric_names": METRIC_NAMES,
        "attribute_names": ATTRIBUTE_NAMES,
        "outcome_names": OUTCOME_NAMES,
        "definitions": DEFINITIONS,
        "attribute_order": GROUPING_ATTRIBUTES,
    }
    if not report.get("empty"):
        context["metric_plots"] = _metric_plots(report["metrics"])
        context["group_plots"] = {
            section["attribute"]: _group_plot(section, report["summary"])
            for section in report["attributes"]
        }
        reliability = report["summary"]["clinicians"].get("reliability")
        context["reliability_plot"] = (
            reliability_svg(
                [(b["mean_probability"], b["observed_rate"], b["n"]) for b in reliability],
                title="Calibration against clinicians",
            )
            if reliability
            else None
        )
    return _environment.get_template(TEMPLATE).render(context)


def _metric_plots(metrics: dict[str, Any]) -> list[tuple[str, Markup]]:
    return [
        (
            name,
            histogram_svg(
                values["histogram"]["counts"],
                values["histogram"]["edges"],
                title=f"{name} (n={values['n']})",
                median=values["median"],
                q1=values["q1"],
                q3=values["q3"],
            ),
        )
        for name, values in metrics.items()
    ]


def _group_plot(section: dict[str, Any], summary: dict[str, Any]) -> Markup:
    bars = [
        Bar(
            label=group["value"],
            rate=group["flag_rate"]["rate"],
            low=group["flag_rate"]["low"],
            high=group["flag_rate"]["high"],
            n=group["audited"],
            highlighted=group["highlighted"],
        )
        for group in section["groups"]
    ]
    return group_bars_svg(
        bars,
        title=f"Flag rate by {section['attribute']} (95 % intervals; dashed: all cases)",
        overall=summary["flag_rate"]["rate"],
    )
