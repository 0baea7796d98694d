"""From projected density to detector pixel values: characteristic curve, scatter, noise.

All values here are display values in 12-bit units with MONOCHROME2 polarity (bright = dense);
MONOCHROME1 inversion happens only when the pixels are stored.
"""

from __future__ import annotations

import numpy as np

from service.training.phantom.imaging import MAX_STORED, FloatImage, blur, unit_noise
from service.training.phantom.sites import Site

CURVE_CENTRE = 0.62  # density shown at mid grey
CURVE_WIDTH = 0.5
SCATTER_SIGMA_MM = 25.0
NOISE_CORRELATION_MM = 0.4


def to_display(density: FloatImage, site: Site, *, spacing_mm: float) -> FloatImage:
    """Return noise-free display values: the site's curve, detector blur and scatter veil."""
    sharp = blur(density, site.blur_mm / spacing_mm)
    fraction = 0.5 * (1.0 + np.tanh((sharp - CURVE_CENTRE) / CURVE_WIDTH))
    fraction = np.power(fraction, site.gamma)
    span = site.white_level - site.black_level
    display = MAX_STORED * (site.black_level + span * fraction)
    veil = blur(display, SCATTER_SIGMA_MM / spacing_mm)
    result: FloatImage = ((1.0 - site.scatter) * display + site.scatter * veil).astype(np.float32)
    return result


def noise_sigma_map(display: FloatImage, site: Site) -> FloatImage:
    """Return the noise standard deviation at each pixel (denser = fewer photons = noisier)."""
    result: FloatImage = (site.noise_sigma * (0.8 + 0.4 * display / MAX_STORED)).astype(np.float32)
    return result


def add_noise(
    display: FloatImage, sigma: FloatImage, rng: np.random.Generator, *, spacing_mm: float
) -> FloatImage:
    """Return ``display`` plus correlated Gaussian noise whose local deviation is ``sigma``."""
    noise = unit_noise(rng, display.shape, NOISE_CORRELATION_MM / spacing_mm)
    result: FloatImage = display + sigma * noise
    return result
