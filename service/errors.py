"""Vigil's one error hierarchy: every expected failure is a ``VigilError`` with an HTTP status."""

from __future__ import annotations


class VigilError(Exception):
    """An expected failure that the user can act on; its message is safe to show."""

    status_code = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    @property
    def name(self) -> str:
        return type(self).__name__


class BadRequest(VigilError):
    status_code = 400


class NotAuthenticated(VigilError):
    status_code = 401


class Forbidden(VigilError):
    status_code = 403


class NotFound(VigilError):
    status_code = 404


class NotAcceptable(VigilError):
    status_code = 406


class Conflict(VigilError):
    status_code = 409


class PayloadTooLarge(VigilError):
    status_code = 413


class UnsupportedMediaType(VigilError):
    status_code = 415


class InvalidDicom(VigilError):
    """The bytes are not a DICOM instance Vigil can store (reason in the message)."""

    status_code = 400


class ServiceUnavailable(VigilError):
    status_code = 503


class InsufficientStorage(VigilError):
    """The archive's disk has no room for what was sent (nothing of it is kept)."""

    status_code = 507


class DatabaseUnreachable(RuntimeError):
    """The database did not answer (its driver's reason in the message, never the URL)."""


class SchemaUnknown(RuntimeError):
    """The database's schema is at a revision this code does not have (a newer Vigil
    migrated it): nothing is changed, and the message says what to do."""
