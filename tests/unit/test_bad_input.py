"""Bad input on every endpoint: the contract's 4xx answer, never a 500, and nothing changed."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from chat_sessions.config import get_settings
from local_stack.template import routes
from tests.support import invoke, table_items

MODULES = sorted({r.module for r in routes()})
BODY_MODULES = ["create_session", "update_session", "create_chat", "update_chat", "send_message", "send_to_active_chat"]
# Every operation on a session or a chat (new routes join by their path in template.yaml).
SESSION_MODULES = sorted({r.module for r in routes() if "{sessionId}" in r.path})
CHAT_MODULES = sorted({r.module for r in routes() if "{chatId}" in r.path})
VALID_BODY: dict[str, dict[str, Any]] = {
    "create_session": {"name": "n"},
    "update_session": {"name": "n"},
    "create_chat": {"name": "n"},
    "update_chat": {"name": "n"},
    "send_message": {"content": "c"},
    "send_to_active_chat": {"content": "c"},
    "fork_chat": {"uptoSeq": 0},
    "edit_message": {"content": "c"},
}
WRONG_BODIES: dict[str, list[Any]] = {
    "create_session": [
        {},
        {"name": 5},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "n", "metadata": "x"},
        {"name": "n", "metadata": {"k": 1}},
        {"name": "n", "metadata": {f"k{i}": "v" for i in range(17)}},
        {"name": "n", "metadata": {"": "v"}},
        {"name": "n", "extra": True},
        {"name": None},
        {"name": ["n"]},
    ],
    "update_session": [{"name": 5}, {"name": None}, {"metadata": []}, {"nam": "typo"}, {"name": ""}],
    "create_chat": [
        {"name": "n", "model": ""},
        {"name": "n", "model": "has space"},
        {"name": "n", "systemPrompt": 3},
        {"name": "n", "systemPrompt": "x" * 32_001},
        {"name": "n", "system_prompt": "snake case is not the contract"},
        {"model": "m"},
    ],
    "update_chat": [{"model": None}, {"name": 1}, {"systemPrompt": ""}, {"active": True}],
    "send_message": [
        {},
        {"content": ""},
        {"content": "x" * 32_001},
        {"content": 1},
        {"content": "x", "role": "system"},
    ],
    "send_to_active_chat": [{"content": None}, {"content": ["x"]}, {"text": "x"}],
}
RAW_BODIES = ["{not json", "[]", "null", '"text"', "", "123", '{"name": "a",}']
FORGED_IDS = ["abc", "01ARZ3NDEKTSV4RRFFQ69G5FA#", "01arz3ndektsv4rrffq69g5fav", "..%2F..%2Fx", "USER#bob", "1" * 27]


@pytest.fixture(scope="module")
def shared_world(module_table: str, module_model: object) -> tuple[dict[str, str], bytes]:
    """A session with two chats (the second active) and one exchange, owned by alice, built once
    for the module (every request here is refused, so nothing here changes it), and the table's
    exact contents once built."""
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    first = str(invoke("create_chat", session=sid, body={"name": "a"}).body["chatId"])
    second = str(invoke("create_chat", session=sid, body={"name": "b"}).body["chatId"])
    assert invoke("send_message", session=sid, chat=second, body={"content": "hi"}).status == 201
    return {"session": sid, "chat": second, "inactive": first, "table": module_table}, raw_items(module_table)


@pytest.fixture
def world(shared_world: tuple[dict[str, str], bytes]) -> Iterator[dict[str, str]]:
    """The shared world; after each test the table must still be byte for byte as it was built,
    so no test runs against what another one left behind."""
    built, pristine = shared_world
    yield built
    assert raw_items(built["table"]) == pristine, "a refused request changed the table"


def raw_items(table_name: str) -> bytes:
    """Every item as DynamoDB returns it (typed attribute values), in a fixed order, as bytes."""
    items: list[dict[str, Any]] = []
    for page in _client().get_paginator("scan").paginate(TableName=table_name):
        items.extend(page["Items"])
    rows = sorted(json.dumps(item, sort_keys=True, default=_binary) for item in items)
    return "\n".join(rows).encode()


@functools.cache
def _client() -> Any:
    """One client for the module's scans (a new one costs more than the scan)."""
    import boto3

    return boto3.client("dynamodb")


def _binary(value: Any) -> str:
    if isinstance(value, bytes | bytearray):  # a B or BS attribute value
        return value.hex()
    raise TypeError(f"unexpected {type(value).__name__} in a scan")


def call(module: str, world: dict[str, str], **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {"session": world["session"], "chat": world["chat"]}
    if module in VALID_BODY:
        kwargs["body"] = VALID_BODY[module]
    kwargs.update(overrides)
    return invoke(module, **kwargs)


def unchanged(world: dict[str, str], before: list[dict[str, Any]]) -> bool:
    return table_items(world["table"]) == before


@pytest.mark.parametrize("module", BODY_MODULES)
def test_malformed_and_wrong_bodies(module: str, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    for raw in RAW_BODIES:
        result = call(module, world, raw_body=raw)
        assert result.status == 400, (module, raw, result)
        assert result.body["error"]["code"] == "validation_error"
        assert isinstance(result.body["error"]["message"], str)
    for body in WRONG_BODIES[module]:
        result = call(module, world, body=body)
        assert result.status == 400, (module, body, result)
        assert result.body["error"]["code"] == "validation_error"
        assert result.body["error"]["details"], result
    assert unchanged(world, before)


@pytest.mark.parametrize("module", BODY_MODULES)
def test_oversize_body_is_413(module: str, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    oversize = get_settings().max_body_bytes  # the body is the content plus its JSON framing
    result = call(module, world, raw_body='{"content": "' + "x" * oversize + '"}')
    assert result.status == 413 and result.body["error"]["code"] == "payload_too_large"
    assert unchanged(world, before)


@pytest.mark.parametrize(
    ("module", "param"), [(m, "session") for m in SESSION_MODULES] + [(m, "chat") for m in CHAT_MODULES]
)
def test_forged_ids_are_not_found(module: str, param: str, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    for forged in FORGED_IDS:
        result = call(module, world, **{param: forged})
        assert result.status == 404, (module, forged, result)
        assert result.body["error"]["code"] == "not_found"
    assert unchanged(world, before)


@pytest.mark.parametrize("module", SESSION_MODULES)
def test_another_users_session_is_not_found(module: str, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    result = call(module, world, user="mallory")
    assert result.status == 404, (module, result)
    assert result.body == {"error": {"code": "not_found", "message": result.body["error"]["message"]}}
    assert unchanged(world, before)


@pytest.mark.parametrize("module", MODULES)
def test_no_identity_is_401(module: str, world: dict[str, str]) -> None:
    result = call(module, world, user=None)
    assert result.status == 401 and result.body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("module", "query"),
    [
        ("list_sessions", {"limit": "0"}),
        ("list_sessions", {"limit": "101"}),
        ("list_sessions", {"limit": "ten"}),
        ("list_sessions", {"cursor": "not-a-cursor"}),
        ("list_chats", {"limit": "-1"}),
        ("list_chats", {"cursor": "eyJrIjoiQ0hBVCMxIiwicyI6IngifQ"}),
        ("list_messages", {"order": "sideways"}),
        ("list_messages", {"limit": "1.5"}),
    ],
)
def test_bad_query_parameters(module: str, query: dict[str, str], world: dict[str, str]) -> None:
    result = call(module, world, query=query)
    assert result.status == 400, result
    assert result.body["error"]["code"] == "validation_error"


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "é"])
def test_bad_idempotency_key(key: str, world: dict[str, str]) -> None:
    before = table_items(world["table"])
    result = call("create_session", world, headers={"Idempotency-Key": key})
    assert result.status == 400, result
    assert unchanged(world, before)


def test_sending_to_an_inactive_chat(world: dict[str, str]) -> None:
    before = table_items(world["table"])
    result = call("send_message", world, chat=world["inactive"])
    assert result.status == 409 and result.body["error"]["code"] == "chat_not_active"
    result = call("regenerate", world, chat=world["inactive"])
    assert result.status == 409 and result.body["error"]["code"] == "chat_not_active"
    assert unchanged(world, before)


@pytest.mark.parametrize("module", BODY_MODULES)
def test_body_that_is_not_utf8(module: str, world: dict[str, str]) -> None:
    import base64

    from tests.support import load_event

    before = table_items(world["table"])
    event_headers = load_event(module)["headers"]
    assert event_headers.get("content-type", "application/json") == "application/json"
    result = call(module, world, raw_body=base64.b64encode(b"\xff\xfe\x00{").decode(), base64_body=True)
    assert result.status == 400, result
    assert result.body["error"]["code"] == "validation_error"
    assert unchanged(world, before)
