"""Acquisition sites: who made the image (DICOM equipment fields) and how their images look.

Site-to-site differences are a confounder with two separate strengths:
``intensity`` (0 = every site's detector and processing identical, 1 = strong differences in
black/white level, gamma, noise, sharpness and scatter) and ``prevalence`` (0 = every site has
the run's prevalence p, 1 = sites alternate between prevalence 1 and 0, so the site alone gives
the label away). In between, site k's prevalence is p + strength·(t_k − p), t_k = 1 for even k,
0 for odd k; with an odd number of sites the last one keeps p, and with one site nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SITE_STREAM = 0x517E  # keeps site draws apart from the per-image streams of the same seed

# (institution, short label burned into images, manufacturer, model)
CATALOGUE: tuple[tuple[str, str, str, str], ...] = (
    ("Northgate General Hospital", "NGH", "Carestream Health", "DRX-Evolution"),
    ("Riverside Community Clinic", "RCC", "FUJIFILM Corporation", "FCR PROFECT CS"),
    ("St Brigid Infirmary", "SBI", "Agfa", "CR 85-X"),
    ("Lakeside Medical Centre", "LMC", "Philips Medical Systems", "DigitalDiagnost"),
    ("Hillcrest University Hospital", "HUH", "GE Healthcare", "Definium 6000"),
    ("Eastport Chest Clinic", "ECC", "SIEMENS", "Fluorospot Compact FD"),
    ("Westmoor Regional Hospital", "WRH", "KONICA MINOLTA", "CS-7"),
    ("Harbourview Health Centre", "HHC", "Canon Inc.", "CXDI-70C Wireless"),
)


@dataclass(frozen=True)
class Site:
    """One acquisition site: its DICOM identity, burned-in label and imaging chain."""

    name: str
    token: str
    institution: str
    manufacturer: str
    model: str
    station: str
    prevalence: float
    black_level: float  # fraction of the 12-bit range shown for no attenuation
    white_level: float  # fraction of the range for the densest tissue
    gamma: float
    noise_sigma: float  # quantum noise at mid grey, 12-bit units
    blur_mm: float  # detector blur (Gaussian sigma)
    scatter: float  # fraction of the signal replaced by a low-pass veil


def make_sites(
    *, count: int, seed: int, prevalence: float, intensity: float, prevalence_strength: float
) -> list[Site]:
    """Return ``count`` sites whose looks and prevalences follow the two confounder strengths."""
    order = np.random.default_rng([seed, SITE_STREAM]).permutation(len(CATALOGUE))
    sites = []
    for k in range(count):
        institution, label, manufacturer, model = CATALOGUE[int(order[k % len(CATALOGUE)])]
        round_ = k // len(CATALOGUE)
        if round_:
            institution, label = f"{institution} {round_ + 1}", f"{label}{round_ + 1}"
        u = np.random.default_rng([seed, SITE_STREAM, k]).uniform(-1.0, 1.0, 6)
        s = intensity
        sites.append(
            Site(
                name=f"site-{k + 1}",
                token=f"{label} XR{k % 3 + 1}",
                institution=institution,
                manufacturer=manufacturer,
                model=model,
                station=f"{label}XR{k % 3 + 1}",
                prevalence=site_prevalence(k, count, prevalence, prevalence_strength),
                black_level=0.05 + 0.035 * s * u[0],
                white_level=0.9 + 0.06 * s * u[1],
                gamma=float(np.exp(0.3 * s * u[2])),
                noise_sigma=float(90.0 * np.exp(0.45 * s * u[3])),
                blur_mm=0.3 + 0.15 * s * u[4],
                scatter=0.15 + 0.08 * s * u[5],
            )
        )
    return sites


def site_prevalence(index: int, count: int, prevalence: float, strength: float) -> float:
    """Return site ``index``'s prevalence (see the module docstring for the rule)."""
    if count == 1 or (count % 2 == 1 and index == count - 1):
        return prevalence
    target = 1.0 if index % 2 == 0 else 0.0
    return prevalence + strength * (target - prevalence)
