"""Input at the edges of the contract: nulls that must not be stored, bodies JSON can parse but
Python cannot (deep nesting, huge integers), identities that cannot become a key, and the
largest valid requests, which must fit under the body limit while an oversize one is refused
unparsed. Each test here failed before the fix it names (issue 8, defects 6, 8, 11, 13)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from chat_sessions.config import get_settings
from chat_sessions.models import MAX_CONTENT
from tests.support import invoke, table_items
from tests.upstream import Reply, Upstream

BODY_MODULES = ["create_session", "update_session", "create_chat", "update_chat", "send_message", "send_to_active_chat"]


@pytest.fixture
def world(table: str, model: Upstream) -> Iterator[dict[str, str]]:
    """Alice's session with one active chat that has one exchange."""
    sid = str(invoke("create_session", body={"name": "s", "metadata": {"k": "v"}}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"])
    assert invoke("send_message", session=sid, chat=chat, body={"content": "hi"}).status == 201
    yield {"session": sid, "chat": chat, "table": table}


def call(module: str, world: dict[str, str], **kwargs: Any) -> Any:
    return invoke(module, session=world["session"], chat=world["chat"], **kwargs)


def test_patch_with_null_metadata_is_refused_and_nothing_is_stored(world: dict[str, str]) -> None:
    """Defect 6: ``{"metadata": null}`` was stored, and every later read of the session was a 500."""
    before = table_items(world["table"])
    result = call("update_session", world, body={"metadata": None})
    assert result.status == 400, result
    assert result.body["error"]["code"] == "validation_error"
    assert result.body["error"]["details"][0]["loc"][-1] == "metadata"
    assert table_items(world["table"]) == before
    got = call("get_session", world)
    assert got.status == 200 and got.body["metadata"] == {"k": "v"}
    assert invoke("list_sessions").status == 200


UNPARSEABLE = [
    "[" * 20_000,
    '{"name": ' + "[" * 20_000 + "]" * 20_000 + "}",
    '{"content": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}",
    '{"name": ' + "1" * 5_000 + "}",
    '{"content": ' + "9" * 5_000 + "}",
    '{"name": "n", "metadata": {"k": ' + "-" + "7" * 4_400 + "}}",
]


@pytest.mark.parametrize("module", BODY_MODULES)
def test_bodies_python_cannot_parse_are_validation_errors(module: str, world: dict[str, str]) -> None:
    """Defect 8: ``json.loads`` raises RecursionError (nesting) or ValueError (an integer of
    more than 4,300 digits), not JSONDecodeError, for these valid JSON documents; they reached
    the catch-all handler as a 500."""
    before = table_items(world["table"])
    for raw in UNPARSEABLE:
        result = call(module, world, raw_body=raw)
        assert result.status == 400, (module, raw[:40], result)
        assert result.body["error"]["code"] == "validation_error"
    assert table_items(world["table"]) == before


def test_a_body_with_thousands_of_errors_lists_the_first_ones(world: dict[str, str]) -> None:
    """30,000 wrong metadata values would be 30,000 details (megabytes of error body)."""
    result = call("create_session", world, body={"name": "n", "metadata": {str(i): i for i in range(30_000)}})
    assert result.status == 400
    assert len(result.body["error"]["details"]) == 20
    assert "30000" in result.body["error"]["message"]


def test_error_details_echoing_a_lone_surrogate_stay_valid_unicode(world: dict[str, str]) -> None:
    """A metadata key with a lone surrogate is refused, and the key it echoes in ``loc`` is
    escaped, so the error body can be encoded as UTF-8 by any gateway or client."""
    result = call("create_session", world, raw_body='{"name": "n", "metadata": {"\\udc00": "v"}}')
    assert result.status == 400, result
    for detail in result.body["error"]["details"]:
        for part in detail["loc"]:
            str(part).encode("utf-8")


@pytest.mark.parametrize("sub", ["\ud800", "alice\udfff", "\udc00\ud800"])
def test_a_subject_that_is_not_unicode_text_is_unauthorized(sub: str, world: dict[str, str]) -> None:
    """Defect 8: a lone surrogate in ``sub`` reached DynamoDB as a key and answered a false 409."""
    before = table_items(world["table"])
    for module, kwargs in [
        ("create_session", {"body": {"name": "s"}}),
        ("list_sessions", {}),
        ("get_session", {}),
        ("send_message", {"body": {"content": "x"}}),
        ("create_session", {"body": {"name": "s"}, "headers": {"Idempotency-Key": "k1"}}),
    ]:
        result = call(module, world, user=sub, **kwargs)
        assert result.status == 401, (module, result)
        assert result.body["error"]["code"] == "unauthorized"
    assert table_items(world["table"]) == before


def _largest_bodies() -> dict[str, dict[str, Any]]:
    """The largest body each writing endpoint accepts, in characters that encode longest: a
    non-BMP character is one character for the limits and 12 bytes (a surrogate-pair escape)
    for a JSON encoder with ``ensure_ascii`` (Python's, JavaScript's ``JSON.stringify`` of
    escaped text, most HTTP clients' defaults)."""
    emoji = "\U0001f600"
    name = emoji * 200
    metadata = {f"{i:02d}" + emoji * 126: emoji * 1024 for i in range(16)}
    return {
        "create_session": {"name": name, "metadata": metadata},
        "update_session": {"name": name, "metadata": metadata},
        "create_chat": {"name": name, "model": "m" * 128, "systemPrompt": emoji * MAX_CONTENT},
        "update_chat": {"name": name, "model": "m" * 128, "systemPrompt": emoji * MAX_CONTENT},
        "send_message": {"content": emoji * MAX_CONTENT},
        "send_to_active_chat": {"content": emoji * MAX_CONTENT},
    }


@pytest.mark.parametrize("module", BODY_MODULES)
def test_the_largest_valid_body_is_accepted(module: str, world: dict[str, str], model: Upstream) -> None:
    """Defect 11: 32,000 emoji escape to 384,000 bytes, over the old 256 KiB limit (413).
    Indented JSON, as a client that pretty-prints would send, fits as well."""
    model.default = Reply(content="short")
    body = _largest_bodies()[module]
    raw = json.dumps(body, indent=2)
    assert len(raw.encode()) > 384_000 or module in ("create_session", "update_session")
    result = call(module, world, raw_body=raw)
    assert result.status in (200, 201), (module, result.status, result.body)
    if module.startswith("send"):
        assert result.body["userMessage"]["content"] == body["content"]
        page = call("list_messages", world, query={"order": "desc", "limit": "2"})
        assert page.status == 200 and page.body["items"][1]["content"] == body["content"]


@pytest.mark.parametrize("module", BODY_MODULES)
def test_an_oversize_body_is_413_without_being_parsed(module: str, world: dict[str, str]) -> None:
    """One byte over the limit is refused before parsing: a body that would otherwise be a 400
    (deep nesting) answers 413, base64-encoded or not, and nothing changes."""
    limit = get_settings().max_body_bytes
    raw = "[" * (limit + 1)
    before = table_items(world["table"])
    for encoded in (False, True):
        body = base64.b64encode(raw.encode()).decode() if encoded else raw
        result = call(module, world, raw_body=body, base64_body=encoded)
        assert result.status == 413, (module, encoded, result.status)
        assert result.body["error"]["code"] == "payload_too_large"
    at_limit = call(module, world, raw_body="[" * limit)
    assert at_limit.status == 400
    assert table_items(world["table"]) == before


def test_the_body_limit_is_derived_from_the_largest_valid_request() -> None:
    """The limit follows the models' bounds: the largest valid body (indented) fits, with room
    to spare for whitespace, and the limit stays well under Lambda's 6 MB request payload."""
    largest = max(len(json.dumps(b, indent=2).encode()) for b in _largest_bodies().values())
    assert largest < get_settings().max_body_bytes < 6_000_000


@pytest.mark.parametrize("module", ["get_session", "list_sessions", "list_chats", "get_chat", "list_messages"])
def test_get_ignores_a_bad_idempotency_key(module: str, world: dict[str, str]) -> None:
    """Defect 13: GETs do not use Idempotency-Key, yet a malformed one answered 400."""
    for key in ["", "x" * 129, "é"]:
        result = call(module, world, headers={"Idempotency-Key": key})
        assert result.status == 200, (module, key, result)


@pytest.mark.parametrize("module", ["update_session", "update_chat", "delete_chat", "delete_session"])
def test_non_post_writes_ignore_a_bad_idempotency_key(module: str, world: dict[str, str]) -> None:
    """PATCH and DELETE are not made idempotent by the header (the contract gives it to POSTs)."""
    kwargs: dict[str, Any] = {"body": {}} if module.startswith("update") else {}
    result = call(module, world, headers={"Idempotency-Key": "é"}, **kwargs)
    assert result.status in (200, 204), (module, result)


@pytest.mark.parametrize("module", BODY_MODULES)
def test_a_body_with_raw_lone_surrogates_is_a_validation_error(module: str, world: dict[str, str]) -> None:
    """Found by the property test: a body string holding a lone surrogate (what the event's
    JSON decodes ``\\ud800`` to) crashed the size check before any handler ran."""
    before = table_items(world["table"])
    for raw in ['{"name": "a\ud800", "content": "a\ud800"}', "\udf8a", '{"\udc00": 1}']:
        result = call(module, world, raw_body=raw)
        assert result.status == 400, (module, result)
        assert result.body["error"]["code"] == "validation_error"
    assert table_items(world["table"]) == before


KEYED_MODULES = [*BODY_MODULES, "pause_session", "resume_session", "archive_session"]


@pytest.mark.parametrize("module", KEYED_MODULES)
def test_a_deep_body_under_an_idempotency_key_is_not_a_500(module: str, world: dict[str, str]) -> None:
    """Found by the body property (pause_session, 1,000 levels, a key, under Hypothesis, which
    raises the recursion limit): Python parses it, but Powertools' Idempotency deep-copies the
    request it binds the key to, two frames a level, and ran out of recursion: a 500. With the
    default limit (1,000 frames) 600 levels parse and do the same. A body nested over
    ``MAX_JSON_DEPTH`` levels is now malformed JSON: 400 where the route reads a body, and
    bound to the key as text where it reads none."""
    from chat_sessions.api import MAX_JSON_DEPTH

    deep = '{"name": ' + '{"a": ' * 600 + "1" + "}" * 600 + "}"

    def nested(levels: int) -> str:  # {"name": ...} with objects ``levels`` deep in all
        return '{"name": ' + '{"a": ' * (levels - 1) + '"x"' + "}" * (levels - 1) + "}"

    for raw, key in ((deep, "deep-1"), (nested(MAX_JSON_DEPTH), "deep-2")):
        result = call(module, world, raw_body=raw, headers={"Idempotency-Key": f"{module}-{key}"})
        assert result.status != 500, (module, result)
        if module in BODY_MODULES:
            assert result.status in (400, 422), (module, result)
    # The deepest body allowed reaches the model's validation (its name must be a string); one
    # level more is refused as malformed JSON, the body as a whole.
    allowed = call("create_session", world, raw_body=nested(MAX_JSON_DEPTH))
    assert allowed.status == 400, allowed
    assert [d["loc"] for d in allowed.body["error"]["details"]] == [["body", "name"]], allowed
    refused = call("create_session", world, raw_body=nested(MAX_JSON_DEPTH + 1))
    assert refused.status == 400 and refused.body["error"]["details"][0]["type"] == "json_invalid", refused
