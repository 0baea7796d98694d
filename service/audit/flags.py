"""Bias flags: which per-image metrics say the model looked at the wrong thing, and why."""

from __future__ import annotations

from dataclasses import dataclass

from service.audit.bias_metrics import HeatmapMetrics, PeakPlace


@dataclass(frozen=True)
class FlagThresholds:
    min_relevant_share: float = 0.5  # for a lung finding, at least half the mass in the lungs
    max_border_share: float = 0.2
    min_counterfactual_change: float = 0.05


@dataclass(frozen=True)
class Flag:
    code: str
    reason: str


def bias_flags(
    metrics: HeatmapMetrics,
    thresholds: FlagThresholds,
    *,
    relevant_kind: str,
    lung_finding: bool,
    counterfactual_change: float | None,
) -> list[Flag]:
    """Return the flags an image's heatmap raises (empty when it looks where it should)."""
    flags: list[Flag] = []
    if (
        lung_finding
        and relevant_kind == "lungs"
        and (metrics.relevant_share < thresholds.min_relevant_share)
    ):
        flags.append(
            Flag(
                "outside-lungs",
                f"only {metrics.relevant_share:.0%} of the heatmap lies in the lung fields "
                f"(threshold {thresholds.min_relevant_share:.0%}) for a lung finding",
            )
        )
    if metrics.peak is PeakPlace.MARKER_OR_TEXT:
        flags.append(Flag("peak-on-marker", "the heatmap peaks on a burned-in marker or text"))
    if metrics.border_share > thresholds.max_border_share:
        flags.append(
            Flag(
                "border",
                f"{metrics.border_share:.0%} of the heatmap lies in the outer 5% border band "
                f"(threshold {thresholds.max_border_share:.0%})",
            )
        )
    if counterfactual_change is not None and (
        counterfactual_change >= thresholds.min_counterfactual_change
    ):
        flags.append(
            Flag(
                "counterfactual",
                f"hiding the strongest hot spot outside the relevant region lowers the "
                f"probability by {counterfactual_change:.2f} "
                f"(threshold {thresholds.min_counterfactual_change:.2f})",
            )
        )
    return flags
