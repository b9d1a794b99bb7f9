"""The WebSocket ``$connect`` authorizer against an issuer of our own on 127.0.0.1: a locally
generated RSA key, its JWKS and OpenID discovery document served over HTTP, tokens signed with
it (PyJWT). It must accept what the HTTP API's JWT authorizer accepts and nothing else."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import ws_authorize
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import LambdaContext, load_event

AUDIENCE = "chat-sessions-api"


class Issuer:
    """An OIDC issuer: discovery, JWKS (keys can be rotated), token signing."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.jwks_requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: Any = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_requests += 1
                    body = {"keys": [issuer.jwk(kid) for kid in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.add_key("k1")

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, kid: str) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str = "k1", key: Any = None, **claims: Any) -> str:
        body = {"iss": self.url, "sub": "alice-sub", "aud": AUDIENCE, "exp": int(time.time()) + 300, **claims}
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Issuer]:
    server = Issuer()
    monkeypatch.setenv("JWT_ISSUER", server.url)
    monkeypatch.setenv("JWT_AUDIENCE", f"other-client,{AUDIENCE}")
    ws_authorize.verifier.cache_clear()
    yield server
    ws_authorize.verifier.cache_clear()
    server.server.shutdown()


def authorize(token: str | None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("ws_authorize"))
    event["queryStringParameters"] = {} if token is None else {"token": token}
    result: dict[str, Any] = ws_authorize.lambda_handler(event, LambdaContext())
    return result


def refused(token: str | None) -> bool:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token)
    return True


def test_a_token_of_the_issuer_for_the_audience_is_allowed(issuer: Issuer) -> None:
    result = authorize(issuer.token())
    method_arn = load_event("ws_authorize")["methodArn"]
    assert result["principalId"] == "alice-sub"
    assert result["context"] == {"userId": "alice-sub"}
    assert result["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}
    ]


def test_a_cognito_access_token_is_checked_by_its_client_id(issuer: Issuer) -> None:
    """Cognito access tokens carry no ``aud``: the HTTP API checks ``client_id`` instead."""
    assert authorize(issuer.token(aud=None, client_id=AUDIENCE, token_use="access"))["context"]["userId"]
    assert refused(issuer.token(aud=None, client_id="someone-else"))


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-api"},
        {"iss": "https://issuer.example.com"},
        {"exp": int(time.time()) - 1},
        {"sub": None},
        {"sub": ""},
        {"exp": None},
    ],
    ids=["audience", "issuer", "expired", "no-sub", "empty-sub", "no-exp"],
)
def test_tokens_the_http_api_would_refuse_are_refused(issuer: Issuer, claims: dict[str, Any]) -> None:
    assert refused(issuer.token(**claims))


def test_a_signature_by_another_key_is_refused(issuer: Issuer) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(issuer.token(key=stranger))


def test_no_token_garbage_and_hmac_tokens_are_refused(issuer: Issuer) -> None:
    assert refused(None)
    assert refused("not-a-jwt")
    # The algorithm-confusion attack: HS256 "signed" with the public key's text.
    hs = jwt.encode(
        {"iss": issuer.url, "sub": "mallory", "aud": AUDIENCE, "exp": int(time.time()) + 60},
        "a-shared-secret-of-sufficient-length!",
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    assert refused(hs)


def test_an_unknown_key_id_within_the_cooldown_does_not_reach_the_issuer(issuer: Issuer) -> None:
    authorize(issuer.token())
    authorize(issuer.token())
    assert issuer.jwks_requests == 1  # cached per container
    issuer.add_key("k2")
    assert refused(issuer.token(kid="k2"))
    assert issuer.jwks_requests == 1


def test_a_rotated_key_is_fetched_after_the_cooldown(issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_authorize, "JWKS_REFRESH_COOLDOWN_S", 0.0)
    authorize(issuer.token())
    issuer.add_key("k2")
    assert authorize(issuer.token(kid="k2"))["principalId"] == "alice-sub"
    assert issuer.jwks_requests == 2


def test_without_an_issuer_every_connection_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ISSUER", "")
    ws_authorize.verifier.cache_clear()
    try:
        assert refused("not-a-jwt")
    finally:
        ws_authorize.verifier.cache_clear()
