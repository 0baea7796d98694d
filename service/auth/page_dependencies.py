"""Who is behind a page request: the session cookie (never a bearer token), its role, and
for every POST the CSRF token of the session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from service.auth import web_sessions
from service.auth.roles import Permission, allows
from service.auth.signing import same_secret
from service.auth.web_sessions import LoginRequired, PageLogin
from service.deps import session_factory_of
from service.errors import Forbidden
from service.log_config import get_logger

log = get_logger(__name__)
CSRF_FIELD = "csrf_token"
# What each permission lets a person do, for the message when their role lacks it.
_DOING = {
    Permission.REVIEW_READ: "open the review worklist and studies",
    Permission.REVIEW_WRITE: "record review decisions",
}


def page_login(request: Request) -> PageLogin:
    """Return the login of the request's session cookie; LoginRequired without a valid one."""
    secret = request.cookies.get(request.app.state.settings.session_cookie_name, "")
    if not secret:
        raise LoginRequired("login")
    with session_factory_of(request)() as session:  # read-only: closed without a commit
        login = web_sessions.authenticate(session=session, secret=secret)
    request.state.principal = login.principal
    request.state.page_login = login  # the page's header shows who is logged in
    return login


async def checked_csrf(
    request: Request, login: Annotated[PageLogin, Depends(page_login)]
) -> PageLogin:
    """Return the login once the form's CSRF token matches the session's; 403 otherwise."""
    form = await request.form()  # parsed once: the endpoint's Form fields reuse it
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str) or not given:
        log.info("pages.csrf_missing")
        raise Forbidden(
            "this form arrived without its security token (CSRF), so it was refused: "
            "reload the page and submit it again"
        )
    if not same_secret(login.csrf_token, given):
        log.info("pages.csrf_mismatch")
        raise Forbidden(
            "this form's security token (CSRF) does not belong to your session, so it was "
            "refused: reload the page and submit it again"
        )
    return login


PageUser = Annotated[PageLogin, Depends(page_login)]
PageForm = Annotated[PageLogin, Depends(checked_csrf)]


def require_page(
    permission: Permission, *, post: bool = False
) -> Callable[[PageLogin], Awaitable[PageLogin]]:
    """Return a dependency for page routes: a login whose role holds the permission; for a
    form (``post``), the session's CSRF token is checked first."""
    if post:

        async def check_form(login: PageForm) -> PageLogin:
            return _allowed(login, permission)

        check_form.__name__ = f"page_form_{permission.name.lower()}"
        return check_form

    async def check(login: PageUser) -> PageLogin:
        return _allowed(login, permission)

    check.__name__ = f"page_{permission.name.lower()}"
    return check


def _allowed(login: PageLogin, permission: Permission) -> PageLogin:
    role = login.principal.role
    if not allows(role, permission):
        log.info("pages.forbidden", role=role.value, permission=permission.value)
        doing = _DOING.get(permission, f"do this (needs {permission.value!r})")
        raise Forbidden(f"your role ({role.value}) may not {doing}")
    return login


PageReviewer = Annotated[PageLogin, Depends(require_page(Permission.REVIEW_READ))]
PageDecider = Annotated[PageLogin, Depends(require_page(Permission.REVIEW_WRITE, post=True))]
