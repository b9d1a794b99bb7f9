"""The WebSocket API's ``$connect`` authorizer (a Lambda REQUEST authorizer): the same JWT the
HTTP API accepts, from ``?token=`` (browsers cannot set headers on a WebSocket).

What it checks is what the HTTP API's JWT authorizer checks: an RS256 signature by a key of the
issuer's JWKS (found through ``<issuer>/.well-known/openid-configuration``), ``iss`` equal to
``JWT_ISSUER``, ``exp`` not past (no leeway), and ``aud`` (or, for Cognito access tokens, which
carry none, ``client_id``) one of ``JWT_AUDIENCE``. The JWKS is cached per container and fetched
again when a token names a key it does not have (a rotation; at most every
``JWKS_REFRESH_COOLDOWN_S``). A refusal raises
``Unauthorized``, which API Gateway answers ``401``; the allowed caller's ``sub`` is passed to
every route of the connection as the context's ``userId``.
"""

from __future__ import annotations

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
import json
import os
import urllib.request
from functools import lru_cache
from typing import Any

import jwt

from chat_sessions import coldstart
from chat_sessions.observability import logger

DISCOVERY_TIMEOUT_S = 5
JWKS_LIFESPAN_S = 300
JWKS_REFRESH_COOLDOWN_S = 30.0
"""A token naming a key the cached JWKS lacks fetches it again, at most once per this many
seconds: tokens with made-up key ids cannot make every connection attempt hit the issuer."""


class Verifier:
    def __init__(self, issuer: str, audiences: list[str]) -> None:
        self.issuer = issuer.rstrip("/")
        self.audiences = audiences
        self._jwks: jwt.PyJWKClient | None = None

    def jwks(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            if not url.startswith(("https://", "http://127.0.0.1")):
                raise ValueError("the issuer must be an https URL")
            with urllib.request.urlopen(url, timeout=DISCOVERY_TIMEOUT_S) as resp:  # noqa: S310 - checked above
                jwks_uri = json.load(resp)["jwks_uri"]
            self._jwks = jwt.PyJWKClient(
                jwks_uri,
                cache_keys=True,
                lifespan=JWKS_LIFESPAN_S,
                timeout=DISCOVERY_TIMEOUT_S,
                cooldown_duration=JWKS_REFRESH_COOLDOWN_S,
            )
        return self._jwks

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``jwt.InvalidTokenError``."""
        key = self.jwks().get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            issuer=self.issuer,
            options={"require": ["sub", "exp", "iss"], "verify_aud": False},
            leeway=0,
        )
        audience = claims.get("aud", claims.get("client_id"))
        offered = audience if isinstance(audience, list) else [audience]
        if not self.audiences or not any(isinstance(a, str) and a in self.audiences for a in offered):
            raise jwt.InvalidAudienceError("audience not accepted")
        if not isinstance(claims.get("sub"), str) or not claims["sub"].strip():
            raise jwt.InvalidTokenError("no subject")
        return claims


@lru_cache(maxsize=1)
def verifier() -> Verifier:
    audiences = [a.strip() for a in os.environ.get("JWT_AUDIENCE", "").split(",") if a.strip()]
    return Verifier(os.environ.get("JWT_ISSUER", ""), audiences)


def policy(method_arn: str, user_id: str) -> dict[str, Any]:
    return {
        "principalId": user_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}],
        },
        "context": {"userId": user_id},
    }


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token") or ""
    try:
        if not token:
            raise jwt.InvalidTokenError("no token")
        claims = verifier().verify(token)
    except (jwt.PyJWTError, ValueError, OSError) as exc:
        logger.info("connection refused", extra={"reason": str(exc)})
        # The one message API Gateway answers 401 to (anything else is a 500).
        raise Exception("Unauthorized") from None
    return policy(str(event.get("methodArn", "")), str(claims["sub"]))


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
