"""Cursors are opaque and refuse to be used for another listing or another user."""

from __future__ import annotations

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
