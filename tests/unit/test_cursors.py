"""Cursors are opaque and refuse to be used for another listing or another user."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from chat_sessions import cursors
from chat_sessions.errors import ValidationFailed


def test_round_trip() -> None:
    token = cursors.encode("SESSION#01ABC", partition="USER#alice", listing="sessions")
    assert token is not None
    assert cursors.decode(token, partition="USER#alice", listing="sessions", prefix="SESSION#") == "SESSION#01ABC"
    assert cursors.encode(None, partition="USER#alice", listing="sessions") is None
    assert cursors.decode(None, partition="USER#alice", listing="sessions", prefix="SESSION#") is None


@pytest.mark.parametrize(
    ("partition", "listing", "prefix"),
    [("USER#bob", "sessions", "SESSION#"), ("USER#alice", "chats", "SESSION#"), ("USER#alice", "sessions", "CHAT#")],
)
def test_refused_elsewhere(partition: str, listing: str, prefix: str) -> None:
    token = cursors.encode("SESSION#01ABC", partition="USER#alice", listing="sessions")
    with pytest.raises(ValidationFailed):
        cursors.decode(token, partition=partition, listing=listing, prefix=prefix)


@pytest.mark.parametrize("junk", ["", "!!!", "e30", "bm90IGpzb24", "x" * 5000, "eyJrIjoxfQ"])
def test_junk_is_a_validation_error(junk: str) -> None:
    with pytest.raises(ValidationFailed):
        cursors.decode(junk, partition="USER#alice", listing="sessions", prefix="SESSION#")


def _unkeyed_cursor(sort_key: str, partition: str, listing: str) -> str:
    """A cursor made by hand the way cursors used to be made: every input is known to the
    caller (its own user id, the listing's name, a sort key it has seen or guessed)."""
    scope = hashlib.sha256(f"{listing}\n{partition}".encode()).hexdigest()[:24]
    raw = json.dumps({"k": sort_key, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def test_a_hand_made_cursor_is_refused(table: str) -> None:
    """Issue 8, defect 12: a cursor needs a tag only the server's key can produce; an unkeyed
    digest of public values let anyone start a listing wherever they liked."""
    from tests.support import invoke

    for i in range(3):
        invoke("create_session", body={"name": f"s{i}"})
    forged = _unkeyed_cursor("SESSION#7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "USER#alice", "sessions")
    result = invoke("list_sessions", query={"cursor": forged})
    assert result.status == 400, result
    assert result.body["error"]["code"] == "validation_error"

    issued = invoke("list_sessions", query={"limit": "1"}).body["nextCursor"]
    payload, tag = issued.split(".")
    other = base64.urlsafe_b64encode(b'{"k":"SESSION#7ZZZZZZZZZZZZZZZZZZZZZZZZZ"}').decode().rstrip("=")
    flipped = tag[:-1] + ("B" if tag.endswith("A") else "A")
    for tampered in (f"{other}.{tag}", f"{payload}.{flipped}", payload, f"{payload}.{tag}.{tag}"):
        result = invoke("list_sessions", query={"cursor": tampered})
        assert result.status == 400, (tampered, result)
    assert invoke("list_sessions", query={"cursor": issued}).status == 200


def test_deployed_the_key_is_the_generated_secret(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``CURSOR_KEY_SECRET`` (set by the template) the key is read from Secrets Manager,
    once per container: a cursor signed with the local default key is refused, and a rotation
    is seen only when the cache expires."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from tests.support import invoke, reset_caches

    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="cursor-key", SecretString="k" * 64)["ARN"]
    for i in range(3):
        invoke("create_session", body={"name": f"s{i}"})
    local = invoke("list_sessions", query={"limit": "1"}).body["nextCursor"]

    monkeypatch.setenv("CURSOR_KEY_SECRET", arn)
    reset_caches()
    parameters.clear_caches()
    assert invoke("list_sessions", query={"cursor": local}).status == 400
    first = invoke("list_sessions", query={"limit": "1"})
    signed = first.body["nextCursor"]
    assert signed != local
    secrets.put_secret_value(SecretId=arn, SecretString="r" * 64)
    second = invoke("list_sessions", query={"limit": "1", "cursor": signed})
    assert second.status == 200 and second.body["items"][0]["sessionId"] != first.body["items"][0]["sessionId"]
    parameters.clear_caches()
