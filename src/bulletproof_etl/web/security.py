"""Who may reach the dashboard and how a form proves it came from the dashboard.

- Bind: 127.0.0.1 by default; any other address needs a token (``check_bind``).
- Host header: only the bound host and the loopback names (DNS rebinding is refused).
- Token: ``Authorization: Bearer TOKEN``, or once ``?token=TOKEN`` (then an HttpOnly cookie).
- CSRF: a random per-browser cookie, echoed by every form in a hidden field and compared in
  constant time; a POST whose ``Origin`` is another site is refused as well.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse, RedirectResponse

from ..errors import BulletproofError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
CSRF_COOKIE = "bp_csrf"
TOKEN_COOKIE = "bp_token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise BulletproofError(f"serving on {host} (not loopback) needs a token: --token TOKEN or "
                               "BULLETPROOF_DASHBOARD_TOKEN; the dashboard can change user data")


def allowed_hosts(host: str) -> list:
    return sorted({*LOOPBACK_NAMES, host.strip("[]"), host})


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class TokenMiddleware(BaseHTTPMiddleware):
    """Every request carries the token (header, cookie, or ``?token=`` once); no token set: open."""

    def __init__(self, app, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request, call_next):
        if not self.token:
            return await call_next(request)
        given = request.query_params.get("token")
        if _same(given, self.token):
            answer = RedirectResponse(request.url.remove_query_params("token"), status_code=303)
            answer.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return answer
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if _same(bearer, self.token) or _same(request.cookies.get(TOKEN_COOKIE), self.token):
            return await call_next(request)
        return PlainTextResponse("401: this dashboard needs its token (?token=... once, or "
                                 "Authorization: Bearer ...)", status_code=401)


def csrf_token(request) -> tuple:
    """``(token, new)``: the browser's CSRF cookie, or a new one to set."""
    found = request.cookies.get(CSRF_COOKIE)
    if found and len(found) >= 32:
        return found, False
    return secrets.token_urlsafe(32), True


def csrf_ok(request, form) -> str | None:
    """None if the POST is genuine, else why not."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        return f"cross-site POST from {origin}"
    if not _same(form.get("csrf"), request.cookies.get(CSRF_COOKIE)):
        return "missing or wrong CSRF token: reload the page and try again"
    return None
