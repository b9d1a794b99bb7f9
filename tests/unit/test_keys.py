"""The key layout: every key starts with the user, ids are checked before they enter a key."""

from __future__ import annotations

import pytest

from chat_sessions import keys
from chat_sessions.errors import NotFound, Unauthorized
from chat_sessions.ids import is_valid_id, new_id

SID = new_id()
CID = new_id()


def test_every_key_starts_with_the_user() -> None:
    for key in (
        keys.session_key("alice", SID),
        keys.quota_key("alice"),
        keys.chat_key("alice", SID, CID),
        keys.message_key("alice", SID, CID, 7),
    ):
        assert key["PK"].startswith("USER#alice")
    assert keys.idempotency_pk("alice").startswith("USER#alice#")


def test_layout_is_the_documented_one() -> None:
    assert keys.session_key("alice", SID) == {"PK": "USER#alice", "SK": f"SESSION#{SID}"}
    assert keys.chat_key("alice", SID, CID) == {"PK": f"USER#alice#SESSION#{SID}", "SK": f"CHAT#{CID}"}
    assert keys.head_key("alice", SID, CID) == {"PK": f"USER#alice#SESSION#{SID}", "SK": f"MSG#{CID}"}
    assert keys.message_key("alice", SID, CID, 42)["SK"] == f"MSG#{CID}#9999999957"


def test_the_head_then_the_newest_messages_come_first_in_sort_order() -> None:
    seqs = (1, 2, 10, 100, 9_999_999)
    sks = [keys.head_sk(CID)] + [keys.message_sk(CID, n) for n in reversed(seqs)]
    assert sks == sorted(sks)
    assert all(sk.startswith(keys.head_sk(CID)) for sk in sks)
    assert [keys.seq_of(CID, keys.message_sk(CID, n)) for n in seqs] == list(seqs)


def test_one_chat_range_never_holds_another_chats_items() -> None:
    other = new_id()
    assert not keys.message_sk(other, 1).startswith(keys.head_sk(CID))
    assert not keys.head_sk(other).startswith(keys.head_sk(CID))


@pytest.mark.parametrize(
    "bad",
    ["", "abc", SID.lower(), SID + "#", "#" + SID[1:], "../" + SID[3:], SID[:-1] + "/", SID[:25], "8" + SID[1:]],
    # Fixed ids: the values hold a fresh ULID, and xdist workers must collect the same names.
    ids=["empty", "short", "lower-case", "hash-after", "hash-before", "path", "slash", "25-chars", "beyond-range"],
)
def test_ids_not_of_the_server_form_are_not_found(bad: str) -> None:
    assert not is_valid_id(bad)
    with pytest.raises(NotFound):
        keys.session_key("alice", bad)
    with pytest.raises(NotFound):
        keys.chat_key("alice", SID, bad)


def test_user_ids_cannot_forge_the_separator() -> None:
    # A subject containing "#" must not be able to address another user's partition.
    forged = keys.session_key("alice#SESSION#x", SID)["PK"]
    assert forged == "USER#alice%23SESSION%23x"
    assert keys.user_pk("a%23") != keys.user_pk("a#")
    with pytest.raises(Unauthorized):
        keys.user_pk("")


def test_ids_are_unique_and_ordered() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(is_valid_id(i) for i in ids)
