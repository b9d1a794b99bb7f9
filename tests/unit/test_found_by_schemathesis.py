"""What Schemathesis found against the published document (issue 16), kept as plain tests.

Each failed before its fix: a multipart Content-Type without a boundary was a 500 (Powertools
parses form and multipart bodies too; every body here is JSON), and the document promised more
than the service accepts or less than it enforces.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chat_sessions import cursors, ids
from chat_sessions.errors import ValidationFailed
from chat_sessions.idempotency import checked_key
from tests.support import invoke, table_items
from tests.upstream import Upstream

BODY_MODULES = ["create_session", "update_session", "create_chat", "update_chat", "send_message", "send_to_active_chat"]
VALID_BODY: dict[str, dict[str, Any]] = {
    "create_session": {"name": "n"},
    "update_session": {"name": "n"},
    "create_chat": {"name": "n"},
    "update_chat": {"name": "n"},
    "send_message": {"content": "hi"},
    "send_to_active_chat": {"content": "hi"},
}


@pytest.fixture
def world(table: str, model: Upstream) -> Iterator[dict[str, str]]:
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"])
    yield {"session": sid, "chat": chat, "table": table}


CASES = [(module, "multipart/form-data") for module in BODY_MODULES] + [
    ("create_session", content_type)
    for content_type in ("multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain")
]


@pytest.mark.parametrize(("module", "content_type"), CASES)
def test_a_body_not_declared_json_is_a_validation_error(module: str, content_type: str, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    result = invoke(
        module,
        session=world["session"],
        chat=world["chat"],
        body=VALID_BODY[module],
        headers={"Content-Type": content_type},
    )
    assert result.status == 400, result
    assert result.body["error"]["code"] == "validation_error"
    assert result.body["error"]["details"] == [{"loc": ["header", "Content-Type"], "type": "unsupported_content_type"}]
    assert table_items(world["table"]) == before


@pytest.mark.parametrize("content_type", ["", "application/json", "application/json; charset=utf-8"])
def test_json_or_no_content_type_is_read(content_type: str, world: dict[str, str]) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    result = invoke("create_session", body={"name": "n"}, headers=headers)
    assert result.status == 201, result


def test_a_multipart_type_on_a_request_without_a_body_is_refused_not_a_500(world: dict[str, str]) -> None:
    result = invoke("pause_session", session=world["session"], headers={"Content-Type": "multipart/form-data"})
    assert result.status == 400, result


@pytest.mark.parametrize(
    "key", [" k", "k ", " ", "", "k" * 129, "k\u00e9"], ids=["lead", "trail", "space", "empty", "long", "nonascii"]
)
def test_an_idempotency_key_that_could_not_arrive_as_sent_is_refused(key: str) -> None:
    """HTTP trims the spaces around a header value: a key with one at either end is not a key
    the document allows (it could not arrive as it was sent)."""
    with pytest.raises(ValidationFailed):
        checked_key(key)


@pytest.mark.parametrize("key", ["k", "a b", "~" * 128, "!"], ids=["one", "inner-space", "longest", "punct"])
def test_idempotency_keys_the_document_allows_are_accepted(key: str) -> None:
    assert checked_key(key) == key


@pytest.mark.parametrize(
    "cursor",
    ["a." + "b" * 21, "a." + "b" * 23, "." + "b" * 22, "a.b.c", "a+." + "b" * 22, "a." + "b" * 22 + "\n"],
    ids=["short-tag", "long-tag", "no-payload", "two-dots", "not-base64url", "newline"],
)
def test_a_cursor_not_of_the_documented_shape_is_refused(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        cursors.decode(cursor, partition="p", listing="l", prefix="S")


def test_issued_cursors_and_ids_have_the_documented_shape() -> None:
    import re

    cursor = cursors.encode("SESSION#" + ids.new_id(), partition="p", listing="l")
    assert cursor is not None and re.fullmatch(cursors.PATTERN, cursor)
    assert re.fullmatch(ids.PATTERN, ids.new_id())
    assert not ids.is_valid_id(ids.new_id() + "\n")


@pytest.mark.parametrize("value", [0.0, 0, -0.0], ids=["float", "int", "negative-zero"])
def test_an_integer_field_takes_a_whole_float(value: float, world: dict[str, str]) -> None:
    """JSON Schema counts 0.0 as the integer 0 (and JavaScript sends no ``.0``): the strict
    models took only ``0``, so a schema-valid fork was a 400."""
    result = invoke("fork_chat", session=world["session"], chat=world["chat"], body={"uptoSeq": value})
    assert result.status == 201, result
    assert result.body["forkedFrom"]["seq"] == 0


@pytest.mark.parametrize("value", [0.5, "0", True, None], ids=["fraction", "string", "bool", "null"])
def test_an_integer_field_refuses_what_is_not_a_whole_number(value: Any, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    result = invoke("fork_chat", session=world["session"], chat=world["chat"], body={"uptoSeq": value})
    assert result.status == 400, result
    assert result.body["error"]["details"][0]["loc"] == ["body", "uptoSeq"]
    assert table_items(world["table"]) == before
