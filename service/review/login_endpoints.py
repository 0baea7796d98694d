"""Logging in and out of the pages, and the account page (who is logged in, what they may do)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.auth import web_sessions
from service.auth.login_throttle import LoginThrottle
from service.auth.page_dependencies import PageForm, PageUser
from service.auth.roles import ROLE_PERMISSIONS, Permission, Role, allows
from service.auth.signing import sign, unsign
from service.auth.web_sessions import LoginRequired
from service.deps import SessionDep, SettingsDep, client_addr
from service.errors import Forbidden, NotAuthenticated
from service.log_config import get_logger
from service.review.rendering import BASE, render
from service.settings import Settings
from service.text_values import Text

log = get_logger(__name__)
router = APIRouter()

# Before there is a session, the login form's CSRF token is a random nonce kept in a cookie
# and signed with the site key in the form: a form made elsewhere cannot carry a valid pair.
NONCE_COOKIE = "vigil_login_nonce"
_PURPOSE = "login-form"


@router.get("/login", name="login")
def login_form(
    request: Request, settings: SettingsDep, next: str = "", why: str = ""
) -> HTMLResponse:
    """The login form (with a notice when a session expired or ended)."""
    return _login_page(request, settings, next=next, notice=LoginRequired.MESSAGES.get(why))


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    username: Annotated[Text, Form(max_length=64)] = "",
    password: Annotated[Text, Form(max_length=1024)] = "",
    csrf_token: Annotated[Text, Form(max_length=256)] = "",
    next: Annotated[Text, Form(max_length=2048)] = "",
) -> Response:
    """Check the password, open a session and go where the person was headed."""
    nonce = request.cookies.get(NONCE_COOKIE, "")
    if not csrf_token or not nonce or unsign(settings.secret_key, _PURPOSE, csrf_token) != nonce:
        log.info("pages.login_csrf_refused")
        error = (
            "The login form arrived without a valid security token (CSRF), so it was refused. "
            "Please try again."
        )
        return _login_page(request, settings, next=next, error=error, status_code=403)
    throttle: LoginThrottle = request.app.state.login_throttle
    address = client_addr(request)
    if wait_s := throttle.wait_s(address, username):
        log.warning("pages.login_throttled", wait_s=wait_s)
        minutes = -(-wait_s // 60)
        error = (
            f"Too many failed logins. Please wait {minutes} minute{'s' if minutes > 1 else ''} "
            "before trying again, or ask an admin."
        )
        page = _login_page(request, settings, next=next, error=error, status_code=429)
        page.headers["retry-after"] = str(wait_s)
        return page
    try:
        opened, secret = web_sessions.login(
            session=session,
            username=username,
            password=password,
            lifetime=timedelta(minutes=settings.session_lifetime_minutes),
            client_addr=address,
        )
    except (NotAuthenticated, Forbidden) as exc:
        if isinstance(exc, NotAuthenticated):
            throttle.failed(address, username)
        log.info("pages.login_refused", reason=exc.message)
        message = exc.message[0].upper() + exc.message[1:] + "."
        return _login_page(request, settings, next=next, error=message, status_code=exc.status_code)
    throttle.succeeded(username)
    role = opened.principal.role
    # Back to where the person was headed; one who may not review starts on their own page
    # (a link into the worklist would only be refused).
    target = (_safe_next(next) if allows(role, Permission.REVIEW_READ) else "") or _landing(role)
    log.info("pages.login", username=opened.principal.username)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        settings.session_cookie_name,
        secret,
        max_age=settings.session_lifetime_minutes * 60,
        path=BASE,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(NONCE_COOKIE, path=BASE)
    return response


@router.post("/logout")
def logout(login: PageForm, session: SessionDep, settings: SettingsDep) -> Response:
    """End the session, forget its cookie and the cached images, and go to the login page."""
    web_sessions.logout(session=session, session_pk=login.session_pk)
    response = RedirectResponse(f"{BASE}/login?why=logged-out", status_code=303)
    response.delete_cookie(settings.session_cookie_name, path=BASE)
    # Images of patients may sit in the browser's cache: ask it to drop them.
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


@router.get("/me", name="account")
def account(request: Request, login: PageUser) -> HTMLResponse:
    """Who is logged in, what their role may do, and the way out."""
    role = login.principal.role
    return render(
        request,
        "account.html",
        {
            "permissions": sorted(p.value for p in ROLE_PERMISSIONS[role]),
            "may_review": allows(role, Permission.REVIEW_READ),
            "may_audit": allows(role, Permission.AUDIT_REPORTS),
        },
    )


def _login_page(
    request: Request,
    settings: Settings,
    *,
    next: str,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    response = render(
        request,
        "login.html",
        {
            "next": _safe_next(next),
            "notice": notice,
            "error": error,
            "csrf_token": sign(settings.secret_key, _PURPOSE, nonce),
        },
        status_code=status_code,
    )
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        max_age=3600,
        path=BASE,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )
    return response


def _landing(role: Role) -> str:
    """Return where a role starts: clinicians the worklist, auditors the audit page."""
    if allows(role, Permission.REVIEW_READ):
        return f"{BASE}/"
    if allows(role, Permission.AUDIT_REPORTS):
        return f"{BASE}/audit"
    return f"{BASE}/me"


def _safe_next(target: str) -> str:
    """Return a place inside the pages to go after login; anything else (another site,
    ``//host``, ``/review-evil``) becomes the empty string."""
    if target == BASE or target.startswith(f"{BASE}/") or target.startswith(f"{BASE}?"):
        return target if "\\" not in target and "//" not in target else ""
    return ""
