"""``make token``: valid tokens, and expired ones for testing the 401 (local_stack/token.py)."""

from __future__ import annotations

import subprocess
import time

import jwt
import pytest

from local_stack import token
from local_stack.template import ROOT

# The contract's default secret is 16 bytes; PyJWT warns on every HMAC key under 32.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def claims(text: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(
        text.strip(), token.secret(), algorithms=["HS256"], options={"verify_exp": False}
    )
    return decoded


def test_expired_and_expires_in(capsys: pytest.CaptureFixture[str]) -> None:
    now = int(time.time())
    token.main(["bob", "--expired"])
    expired = claims(capsys.readouterr().out)
    assert expired["sub"] == "bob" and isinstance(expired["exp"], int) and expired["exp"] < now
    token.main(["bob", "--expires-in", "-5"])
    assert claims(capsys.readouterr().out)["exp"] in range(now - 5, now - 3)
    token.main(["bob", "--expires-in", "600"])
    assert claims(capsys.readouterr().out)["exp"] in range(now + 600, now + 603)
    with pytest.raises(jwt.ExpiredSignatureError):
        token.main(["bob", "--expired"])
        jwt.decode(capsys.readouterr().out.strip(), token.secret(), algorithms=["HS256"])


def test_a_zero_lifetime_and_both_options_are_refused() -> None:
    with pytest.raises(SystemExit):
        token.main(["bob", "--ttl", "0"])
    with pytest.raises(SystemExit):
        token.main(["bob", "--expired", "--ttl", "60"])


def test_make_token_expired() -> None:
    out = subprocess.run(
        ["make", "-s", "token", "USER=carol", "EXPIRED=1"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    decoded = claims(out)
    assert decoded["sub"] == "carol" and isinstance(decoded["exp"], int) and decoded["exp"] < time.time()
