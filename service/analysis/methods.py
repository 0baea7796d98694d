"""Explanation methods a client may ask for."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from service.errors import BadRequest


class ExplanationMethod(StrEnum):
    GRADCAM = "gradcam"
    GRADCAMPP = "gradcampp"
    OCCLUSION = "occlusion"


def parse_methods(values: Iterable[str]) -> tuple[ExplanationMethod, ...]:
    """Return the methods sorted and without repeats; raise BadRequest naming an unknown one."""
    methods: set[ExplanationMethod] = set()
    for value in values:
        try:
            methods.add(ExplanationMethod(value.strip().lower()))
        except ValueError:
            known = ", ".join(m.value for m in ExplanationMethod)
            raise BadRequest(f"unknown explanation method {value!r}; known: {known}") from None
    if not methods:
        raise BadRequest("at least one explanation method is needed")
    return tuple(sorted(methods))


def methods_key(methods: Iterable[ExplanationMethod]) -> str:
    """Return the stored form of a method set: sorted, comma-separated."""
    return ",".join(sorted(m.value for m in methods))
