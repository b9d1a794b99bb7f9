"""Tokens for the local stack: ``python -m local_stack.token alice [--ttl 3600]``.

The local gateway plays API Gateway's JWT authorizer and accepts HS256 tokens signed with
``LOCAL_JWT_SECRET`` (default ``local-dev-secret``); this prints one for a user so curl, the
chat client and the tests can call the API as that user (``TOKEN=$(make -s token USER=alice)``).
``make token EXPIRED=1`` (``--expired``, or a negative ``--expires-in``) prints one already
expired, to see the API's 401 for it.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

DEFAULT_SECRET = "local-dev-secret"  # noqa: S105 - the contract's documented local-only secret
DEFAULT_TTL_SECONDS = 3600
ISSUER = "local-stack"

# The contract fixes the default secret (16 bytes); PyJWT warns about HMAC keys under 32 bytes.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)


def secret() -> str:
    return os.environ.get("LOCAL_JWT_SECRET") or DEFAULT_SECRET


def make_token(user: str, ttl_seconds: int | None = DEFAULT_TTL_SECONDS, key: str | None = None, **claims: Any) -> str:
    """An HS256 token with ``sub=user``; no ``exp`` when ``ttl_seconds`` is None."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": user, "iss": ISSUER, "iat": now, **claims}
    if ttl_seconds is not None:
        payload["exp"] = now + ttl_seconds
    return jwt.encode(payload, key or secret(), algorithm="HS256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print a bearer token for the local stack.")
    parser.add_argument("user", help="the user id (the token's sub claim)")
    lifetime = parser.add_mutually_exclusive_group()
    lifetime.add_argument(
        "--ttl",
        "--expires-in",
        dest="ttl",
        type=int,
        default=DEFAULT_TTL_SECONDS,
        help="seconds until it expires (default 3600); negative: expired that long ago",
    )
    lifetime.add_argument(
        "--expired", action="store_true", help="a token that expired a minute ago (`make token EXPIRED=1`), for 401s"
    )
    args = parser.parse_args(argv)
    if not args.user.strip():
        parser.error("the user must not be empty")
    ttl = -60 if args.expired else args.ttl
    if ttl == 0:
        parser.error("--ttl must not be 0 (positive: valid that long; negative: already expired)")
    print(make_token(args.user, ttl))


if __name__ == "__main__":
    main()
