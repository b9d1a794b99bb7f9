"""The web console's local routes: its static files at ``/`` and a token for a user name.

Why it exists: the console (``web/``) is plain static files that can be hosted anywhere and
pointed at a deployed API, but ``make run`` should give a working console with nothing else to
start. So the local gateway serves ``web/`` at ``/`` (same origin as the API: no CORS needed),
and, because there is no identity provider on one machine, mints a token for a user name at
``POST /local/token`` with the secret the gateway's authorizer checks. That route exists only in
the local stack; the deployed API has no such route (the console then asks for a pasted token).

The gateway calls :func:`serve` before it routes a request; ``None`` means "not one of ours".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local_stack.gateway import HttpRequest, HttpResponse, error_response, json_response
from local_stack.token import DEFAULT_TTL_SECONDS, make_token

WEB = Path(__file__).resolve().parent.parent / "web"
TOKEN_PATH = "/local/token"  # noqa: S105 - a URL path, not a secret
MAX_USER_CHARS = 128
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# The console's files are few and small; a browser revalidates them on every load, so an edit
# shows at the next reload (no build step, no cache busting).
_NO_CACHE = ("Cache-Control", "no-cache")


def static_files() -> dict[str, Path]:
    """URL path -> file, for the files directly in ``web/`` with a known type (no directories,
    so no path in a request can reach outside it)."""
    files = {f"/{p.name}": p for p in WEB.iterdir() if p.is_file() and p.suffix in _TYPES} if WEB.is_dir() else {}
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


def serve(request: HttpRequest, secret: str) -> HttpResponse | None:
    """The console's answer to ``request``, or None when the gateway should route it."""
    path = urlsplit(request.target).path or "/"
    if path == TOKEN_PATH and request.method == "POST":
        return _token(request.body, secret)
    if request.method not in ("GET", "HEAD"):
        return None
    file = static_files().get(path)
    if file is None:
        return None
    return HttpResponse(200, [("Content-Type", _TYPES[file.suffix]), _NO_CACHE], file.read_bytes())


def _token(body: bytes, secret: str) -> HttpResponse:
    """``{"user": "alice"}`` -> ``200 {"token", "user", "expiresIn"}``: an HS256 token with
    ``sub=user`` that the local authorizer accepts for an hour."""
    try:
        parsed: Any = json.loads(body or b"null")
    except ValueError:
        return error_response(400, "validation_error", 'The body must be JSON: {"user": "<name>"}.')
    user = parsed.get("user") if isinstance(parsed, dict) else None
    if not isinstance(user, str) or not user.strip():
        return error_response(400, "validation_error", 'Give a user name: {"user": "<name>"}.')
    user = user.strip()
    if len(user) > MAX_USER_CHARS or not user.isprintable():
        return error_response(400, "validation_error", f"A user name is 1 to {MAX_USER_CHARS} printable characters.")
    token = make_token(user, DEFAULT_TTL_SECONDS, key=secret)
    return json_response(200, {"token": token, "user": user, "expiresIn": DEFAULT_TTL_SECONDS}, [_NO_CACHE])
