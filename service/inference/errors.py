"""Errors of the model registry: a bundle that cannot be used, a model that cannot be served."""

from __future__ import annotations

from service.errors import VigilError


class BundleError(VigilError):
    """A model bundle folder is incomplete or inconsistent; the message names bundle and problem."""

    # A broken bundle is the operator's problem, not the caller's: the service cannot answer.
    status_code = 503


class ModelUnavailable(VigilError):
    """The requested model is not loaded: unknown name (404) or a bundle that failed (503)."""

    status_code = 503
