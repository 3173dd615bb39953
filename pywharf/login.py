"""Browser login: a self-contained form, a checked secret, a signed session cookie.

A session carries what its secret granted: reading, or with a write secret also the web pages'
yank, unyank and delete forms (`pywharf.web`), each guarded by a session-bound signed token,
the same-origin checks and a confirmation step. The API's uploads and changes still need Basic
auth, so no cross-site post can act there with a browser's cookie. The login form itself is
guarded by a signed, dated double-submit token, the Origin header and Fetch Metadata.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from html import escape
from urllib.parse import quote
from urllib.parse import urlsplit

from pywharf.auth import Permission
from pywharf.errors import Forbidden
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import read_form
from pywharf.session import CSRF_COOKIE
from pywharf.session import SESSION_COOKIE
from pywharf.session import SessionKeys
from pywharf.session import parse_cookies

__all__ = [
    "login_form",
    "login_redirect",
    "logout",
    "safe_next",
    "same_origin",
    "secure_flag",
    "submit_login",
]

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pywharf: log in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
form {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem;
        border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
label {{ display: block; margin-top: 1rem; font-size: .9rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .6rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><form method="post" action="/login/?next={next}">
<h1>pywharf</h1>
{message}
<label>Repository <input name="pkg_repo_name" autocomplete="username" required autofocus></label>
<label>Secret <input name="pkg_repo_secret_raw" type="password"
  autocomplete="current-password" required></label>
<input type="hidden" name="csrf" value="{token}">
<button type="submit">Log in</button>
</form></body></html>
"""


def safe_next(value: str | None) -> str:
    """Only a local path: `next=https://evil.example/` was an open redirect in the original."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):  # urlsplit would drop them silently
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return quote(value, safe="/?&=%:;@!$'()*+,~-._")  # an ASCII Location, whatever was asked


def secure_flag(request: Request) -> str:
    # Behind a TLS-terminating proxy, X-Forwarded-Proto says so; the flag only adds safety.
    https = request.secure or request.header("x-forwarded-proto") == "https"
    return "; Secure" if https else ""


def login_form(
    request: Request, keys: SessionKeys, message: str = "", status: int = 200
) -> Response:
    token = keys.csrf_token()
    shown = f'<p class="error">{escape(message)}</p>' if message else ""
    target = quote(safe_next(request.query.get("next")), safe="/")
    body = _PAGE.format(next=escape(target), message=shown, token=token).encode()
    cookie = f"{CSRF_COOKIE}={token}; Path=/login/; HttpOnly; SameSite=Strict{secure_flag(request)}"
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Set-Cookie", cookie),
        ("Cache-Control", "no-store"),
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
        ("X-Frame-Options", "DENY"),
    ]
    return Response(status, headers, body)


def same_origin(request: Request) -> bool:
    # Fetch Metadata: a browser that sends it says where the form came from; a sibling
    # subdomain ("same-site") could plant cookies, so only our own origin (or a typed-in
    # navigation, "none") may post the login form.
    if request.header("sec-fetch-site") not in (None, "same-origin", "none"):
        return False
    origin = request.header("origin")
    if origin is None or origin == "null":
        return origin is None  # a sandboxed or privacy-stripped post is refused
    return urlsplit(origin).netloc == request.header("host")


def submit_login(
    request: Request, keys: SessionKeys, check: Callable[[str, str], tuple[Permission, str]]
) -> Response:
    """Check the posted secret; on success set the session cookie and go to `next`."""
    form = read_form(request)
    cookie = parse_cookies(request.header("cookie")).get(CSRF_COOKIE, "")
    token = form.get("csrf", "")
    # compare_digest takes str only in ASCII; header values arrive as Latin-1: compare bytes.
    same = hmac.compare_digest(token.encode(), cookie.encode())
    if not same or not keys.csrf_valid(token) or not same_origin(request):
        raise Forbidden("the login form expired or came from another site; reload it")
    name = form.get("pkg_repo_name", "").strip().lower()
    secret = form.get("pkg_repo_secret_raw", "")
    granted, epoch = check(name, secret) if name and secret else (Permission.NONE, "")
    if granted < Permission.READ:
        return login_form(request, keys, "Unknown repository or wrong secret.", 403)
    session = keys.issue(name, min(granted, Permission.WRITE), epoch)
    cookie_line = (
        f"{SESSION_COOKIE}={session}; Path=/; Max-Age={keys.lifetime}; HttpOnly; "
        f"SameSite=Lax{secure_flag(request)}"
    )
    location = safe_next(request.query.get("next") or form.get("next"))
    return Response(303, [("Location", location), ("Set-Cookie", cookie_line)], b"")


def logout(request: Request, keys: SessionKeys) -> Response:
    """End the session: the browser forgets the cookie, and every server refuses it from now."""
    keys.revoke(parse_cookies(request.header("cookie")).get(SESSION_COOKIE))
    cookie = f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure_flag(request)}"
    return Response(303, [("Location", "/login/"), ("Set-Cookie", cookie)], b"")


def login_redirect(request: Request) -> str:
    return f"/login/?next={quote(request.path, safe='/')}"
