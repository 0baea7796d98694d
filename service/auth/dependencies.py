"""Who is calling, and may they: one permission dependency per route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from service.auth.roles import Permission, allows
from service.auth.service import Principal
from service.auth.token_lookup import TokenLookup
from service.errors import Forbidden, NotAuthenticated
from service.log_config import get_logger

log = get_logger(__name__)


async def get_principal(request: Request) -> Principal:
    """Return the caller named by ``Authorization: Bearer <token>``; 401 without one."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise NotAuthenticated("this route needs an API token: Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not secret.strip():
        raise NotAuthenticated("the Authorization header must be 'Bearer <token>'")
    lookup: TokenLookup = request.app.state.token_lookup
    principal = await lookup.authenticate(secret.strip())
    request.state.principal = principal
    return principal


def check_permission(principal: Principal, permission: Permission) -> Principal:
    """Return the principal if its role holds the permission; raise Forbidden if not."""
    if not allows(principal.role, permission):
        log.info("auth.forbidden", role=principal.role.value, permission=permission.value)
        raise Forbidden(
            f"role {principal.role.value!r} may not do this (needs {permission.value!r})"
        )
    return principal


class PermissionCheck:
    """The dependency ``require`` returns: the caller, if their role holds ``permission``."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self.__name__ = f"require_{permission.name.lower()}"

    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        return check_permission(principal, self.permission)


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """Return a dependency that lets through only callers whose role holds a permission."""
    return PermissionCheck(permission)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
DicomStorer = Annotated[Principal, Depends(require(Permission.DICOM_STORE))]
DicomReader = Annotated[Principal, Depends(require(Permission.DICOM_READ))]
AccessLogReader = Annotated[Principal, Depends(require(Permission.ACCESS_LOG_READ))]
AnyRole = Annotated[Principal, Depends(require(Permission.WHOAMI))]
AnalysisRequester = Annotated[Principal, Depends(require(Permission.ANALYSIS_REQUEST))]
AnalysisReader = Annotated[Principal, Depends(require(Permission.ANALYSIS_READ))]
ReviewReader = Annotated[Principal, Depends(require(Permission.REVIEW_READ))]
ReviewWriter = Annotated[Principal, Depends(require(Permission.REVIEW_WRITE))]
