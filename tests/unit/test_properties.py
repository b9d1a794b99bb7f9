"""Property-based: no input, from a client or from the model, can poison stored data.

Two properties, each checked on generated input (Hypothesis) through the real handlers against
moto, the model reached with the real ``openai`` client on a local scripted server:

1. Bodies posted to every writing endpoint (nulls, wrong types, deep nesting, huge numbers,
   lone surrogates and other odd Unicode, extra fields, raw text): the answer is a status the
   contract gives that endpoint, never a 500; a 4xx leaves the table exactly as it was; a 2xx
   leaves every read of the resource (GET and LIST) answering 200 with a body of the contract's
   shape, equal to what the write answered.
2. Model replies served to send and regenerate: either 201 with the reply an independent oracle
   (:func:`readable_reply`) says is readable, stored well-typed and read back equal; or 502/429
   with nothing stored but the user's message, ``unanswered``, and every listing still 200.

The moto world is built once per test function and shared by its examples (an example must not
break what the next one sees: that is the property), and each example scans the table once,
comparing it with what the previous example left (:class:`Snapshot`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chat_sessions.config import get_settings
from chat_sessions.models import Chat, ChatPage, Exchange, Message, MessagePage, Session, SessionPage
from tests.support import invoke, table_items
from tests.upstream import Reply, Upstream

# One world per test function on purpose (HealthCheck.function_scoped_fixture): examples share
# it. No example database (nothing written into the repository); no per-example deadline (moto
# and the local upstream vary with the machine's load).
_SHARED = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
BODY_SETTINGS = settings(_SHARED, max_examples=150)
REPLY_SETTINGS = settings(_SHARED, max_examples=100)

# --- generated values -----------------------------------------------------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_characters = st.one_of(
    st.characters(),
    surrogates,
    st.sampled_from(["\x00", "\u202e", "\ufeff", "\U0001f600", "#", "%", "\n", '"', "\\"]),
)
edge_strings = st.sampled_from(
    [
        "",
        " ",
        "x" * 200,
        "x" * 201,
        "m" * 128,
        "m" * 129,
        "has space",
        "gpt-4o-mini",
        "a:b/c@d+e_f.g",
        "\U0001f600" * 200,
    ]
)
texts = st.one_of(st.text(odd_characters, max_size=30), edge_strings)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=10
)
metadata_like = st.dictionaries(texts, st.one_of(texts, scalars), max_size=18)

# Values the contract accepts, so that writes succeed often enough to check what they store.
valid_texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
valid_names = st.one_of(valid_texts, st.sampled_from(["x" * 200, "\U0001f600" * 200]))
valid_models = st.from_regex(r"[A-Za-z0-9._:/@+-]{1,128}", fullmatch=True)
valid_metadata = st.dictionaries(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=128),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=60),
    max_size=16,
)
VALID_BODIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "create_session": st.fixed_dictionaries({"name": valid_names}, optional={"metadata": valid_metadata}),
    "update_session": st.fixed_dictionaries({}, optional={"name": valid_names, "metadata": valid_metadata}),
    "create_chat": st.fixed_dictionaries(
        {"name": valid_names}, optional={"model": valid_models, "systemPrompt": st.none() | valid_texts}
    ),
    "update_chat": st.fixed_dictionaries(
        {}, optional={"name": valid_names, "model": valid_models, "systemPrompt": st.none() | valid_texts}
    ),
    "send_message": st.fixed_dictionaries({"content": valid_texts}),
    "send_to_active_chat": st.fixed_dictionaries({"content": valid_texts}),
}

FIELDS = {
    "create_session": ["name", "metadata"],
    "update_session": ["name", "metadata"],
    "create_chat": ["name", "model", "systemPrompt"],
    "update_chat": ["name", "model", "systemPrompt"],
    "send_message": ["content"],
    "send_to_active_chat": ["content"],
}
BODYLESS = ["pause_session", "resume_session", "activate_chat", "regenerate"]
WRITES = [*FIELDS, *BODYLESS]

# Every status the contract gives each endpoint for a client's input (the model always answers
# here, so no 502/504; no resource is deleted, so no 404).
ALLOWED = {
    "create_session": {201, 400, 409, 413, 422},
    "update_session": {200, 400, 413},
    "create_chat": {201, 400, 413, 422},
    "update_chat": {200, 400, 413},
    "send_message": {201, 400, 409, 413, 422},
    "send_to_active_chat": {201, 400, 409, 413, 422},
    "pause_session": {200, 400, 422},
    "resume_session": {200, 400, 409, 422},
    "activate_chat": {200, 400, 422},
    "regenerate": {201, 400, 409, 422},
}
CODES = {
    400: {"validation_error"},
    409: {"session_limit_reached", "chat_not_active", "session_paused", "no_active_chat", "nothing_to_regenerate"},
    413: {"payload_too_large"},
    422: {"idempotency_key_reused"},
    429: {"rate_limited"},
    502: {"upstream_error"},
    504: {"upstream_timeout"},
}


@st.composite
def bodies(draw: st.DrawFn, module: str) -> str | None:
    """A request body as sent on the wire: usually JSON shaped like the endpoint's, with wrong
    values, missing or extra fields; sometimes any JSON; sometimes text JSON cannot or Python
    cannot read."""
    if module in BODYLESS and draw(st.booleans()):
        return None
    fields = FIELDS.get(module, ["name", "content"])
    shaped = st.fixed_dictionaries(
        {}, optional={f: st.one_of(texts, json_values, metadata_like) for f in fields}
    ).flatmap(lambda d: st.dictionaries(texts, json_values, max_size=2).map(lambda extra: {**extra, **d}))
    kind = draw(st.sampled_from(["shaped"] * 4 + ["valid"] * 3 + ["any", "raw"]))
    if kind == "valid" and module in VALID_BODIES:
        return json.dumps(draw(VALID_BODIES[module]), ensure_ascii=draw(st.booleans()))
    if kind == "raw":
        return draw(
            st.one_of(
                st.integers(1_000, 30_000).map(lambda n: "[" * n),
                st.integers(4_301, 6_000).map(lambda n: '{"content": ' + "9" * n + "}"),
                st.integers(1_000, 5_000).map(lambda n: '{"name": ' + '{"a": ' * n + "1" + "}" * n + "}"),
                st.text(odd_characters, max_size=50),
                st.sampled_from(["", "null", "[]", '{"name": "a",}', "{", '"x"', "1e999", "NaN"]),
            )
        )
    value = draw(shaped if kind == "shaped" else json_values)
    return json.dumps(value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))


idempotency_keys = st.one_of(
    st.none(), st.sampled_from(["k-1", "k-2", "", "x" * 129, "é", "tab\there"]), st.text(odd_characters, max_size=10)
)


# --- reading back ---------------------------------------------------------------------------


def strict(model: Any, body: Any) -> Any:
    """The body validated against the contract's response model, with no coercion."""
    return model.model_validate(body, strict=True)


class Snapshot:
    """The table's items as the previous example left them: each example scans the table once
    (moto's scan of a table of 128 KiB replies is most of this module's run time), and what it
    added or changed is the difference from the snapshot. Examples share one world and run one
    at a time, so nothing else writes between two scans."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.items = self._scan()

    def _scan(self) -> dict[str, dict[str, Any]]:
        return {json.dumps(i, sort_keys=True, default=str): i for i in table_items(self.table)}

    def changes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(items new or changed, items gone or changed) since the last call; the snapshot
        moves to now, also when the example goes on to fail, so a shrink starts from the truth."""
        now = self._scan()
        added = [i for k, i in now.items() if k not in self.items]
        removed = [i for k, i in self.items.items() if k not in now]
        self.items = now
        return added, removed


def read_everything(session_id: str, chat_ids: list[str], page_size: str = "100") -> None:
    """Every read of the session and its chats answers 200 with bodies of the contract's shape
    (messages: the first and the last ``page_size``, each item checked)."""
    got = invoke("get_session", session=session_id)
    assert got.status == 200, got
    strict(Session, got.body)
    listing = invoke("list_sessions", query={"limit": "100"})
    assert listing.status == 200, listing
    strict(SessionPage, listing.body)
    chats = invoke("list_chats", session=session_id, query={"limit": "100"})
    assert chats.status == 200, chats
    strict(ChatPage, chats.body)
    for chat_id in chat_ids:
        chat = invoke("get_chat", session=session_id, chat=chat_id)
        assert chat.status == 200, chat
        strict(Chat, chat.body)
        for order in ("asc", "desc"):
            query = {"limit": page_size, "order": order}
            page = invoke("list_messages", session=session_id, chat=chat_id, query=query)
            assert page.status == 200, page
            for item in strict(MessagePage, page.body).items:
                strict(Message, item.model_dump(mode="json", by_alias=True))


def assert_error_shape(status: int, body: Any) -> None:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] in CODES[status], (status, error)
    assert isinstance(error["message"], str) and error["message"]
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # valid Unicode throughout


# --- property 1: bodies ------------------------------------------------------------------------


@pytest.fixture
def world(table: str, model: Upstream) -> Iterator[dict[str, Any]]:
    sid = str(invoke("create_session", body={"name": "s", "metadata": {"k": "v"}}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"])
    assert invoke("send_message", session=sid, chat=chat, body={"content": "hi"}).status == 201
    yield {"session": sid, "chat": chat, "table": table, "items": Snapshot(table)}


@BODY_SETTINGS
@given(data=st.data())
def test_no_body_poisons_stored_data(world: dict[str, Any], data: st.DataObject) -> None:
    module = data.draw(st.sampled_from(WRITES), label="module")
    raw = data.draw(bodies(module), label="body")
    key = data.draw(idempotency_keys, label="Idempotency-Key")
    headers = {} if key is None else {"Idempotency-Key": key}
    snapshot: Snapshot = world["items"]

    kwargs: dict[str, Any] = {"session": world["session"], "chat": world["chat"], "headers": headers}
    if raw is not None:
        kwargs["raw_body"] = raw
    result = invoke(module, **kwargs)

    event(f"{module} -> {result.status}")
    assert result.status in ALLOWED[module], (module, result)
    if result.status >= 400:
        assert_error_shape(result.status, result.body)
        assert snapshot.changes() == ([], []), (module, result)
        return
    snapshot.changes()  # the next example's "before"
    session_id, chat_ids = world["session"], [world["chat"]]
    if module in ("create_session", "update_session", "pause_session", "resume_session"):
        answered = strict(Session, result.body)
        if answered.session_id != session_id:  # a new session: no chats yet
            session_id, chat_ids = answered.session_id, []
        assert invoke("get_session", session=session_id).body == result.body
    elif module in ("create_chat", "update_chat", "activate_chat"):
        answered_chat = strict(Chat, result.body)
        chat_ids.append(answered_chat.chat_id)
        assert invoke("get_chat", session=session_id, chat=answered_chat.chat_id).body == result.body
    else:
        exchange = strict(Exchange, result.body)
        chat_ids.append(exchange.assistant_message.chat_id)
        newest = invoke(
            "list_messages", session=session_id, chat=exchange.assistant_message.chat_id, query={"order": "desc"}
        ).body["items"][0]
        assert newest == result.body["assistantMessage"]
    read_everything(session_id, chat_ids)


# --- property 2: model replies ---------------------------------------------------------------

ASKED_MODEL = "asked-model"
MAX_TOKENS = 100_000_000


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS


def _unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def readable_reply(reply: Any, max_reply_bytes: int) -> tuple[str, str, int, int] | None:
    """The oracle, written from the chat-completions format and not from ``llm.py``: what a
    readable reply stores (content, model, prompt and completion tokens), or None.

    Readable: a JSON object, valid Unicode throughout; ``choices`` a non-empty list of objects,
    each with a ``message`` object whose ``content`` is a string or null, the first one's a
    string of at most ``max_reply_bytes``; ``model`` absent, null (the model asked for) or a
    string of 1..256 characters; ``usage`` absent, null or an object whose token counts, where
    present, are integers 0..10^8 (``total_tokens`` may be null; the stored total is ours)."""
    if not isinstance(reply, dict) or not _unicode(reply):
        return None
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), str | None):
            return None
    content = choices[0]["message"].get("content")
    if not isinstance(content, str) or len(content.encode()) > max_reply_bytes:
        return None
    model = reply.get("model")
    if model is not None and not (isinstance(model, str) and 1 <= len(model) <= 256):
        return None
    usage = reply.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        return None
    for name in ("prompt_tokens", "completion_tokens"):
        if name in usage and not _is_count(usage[name]):
            return None
    if usage.get("total_tokens") is not None and not _is_count(usage["total_tokens"]):
        return None
    return content, model or ASKED_MODEL, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)


reply_texts = st.one_of(texts, st.sampled_from(["ok", "\U0001f600", ""]))
counts = st.one_of(
    st.integers(0, 1_000),
    st.integers(-5, -1),
    st.integers(10**8, 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    texts,
)


@st.composite
def model_replies(draw: st.DrawFn) -> tuple[bytes, Any]:
    """A chat-completions body (bytes on the wire) and the value it encodes (None when it is not
    JSON): mostly the right shape with wrong parts, sometimes anything."""
    max_bytes = get_settings().max_reply_bytes
    message = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "role": st.one_of(st.just("assistant"), texts),
                "content": st.integers(0, 19).flatmap(
                    # 1 in 20: a reply at the storable limit, or one byte over it
                    lambda n: (
                        st.sampled_from(["x" * max_bytes, "x" * (max_bytes + 1)])
                        if n == 0
                        else st.one_of(reply_texts, reply_texts, json_values)
                    )
                ),
                "refusal": st.none(),
                "tool_calls": st.one_of(st.none(), json_values),
            },
        )
    )
    choice = draw(
        st.one_of(
            st.fixed_dictionaries({"index": st.just(0), "message": st.just(message), "finish_reason": st.just("stop")}),
            json_values,
        )
    )
    usage = draw(
        st.one_of(
            st.none(),
            json_values,
            st.fixed_dictionaries(
                {}, optional={"prompt_tokens": counts, "completion_tokens": counts, "total_tokens": counts}
            ),
        )
    )
    fields: dict[str, Any] = {
        "id": st.one_of(st.just("chatcmpl-1"), texts),
        "object": st.just("chat.completion"),
        "model": st.one_of(st.just("served-model"), st.none(), scalars),
        "choices": st.one_of(st.just([choice]), st.just([choice, choice]), st.just([]), json_values),
        "usage": st.just(usage),
    }
    choices = fields.pop("choices")
    reply = draw(st.fixed_dictionaries({}, optional=fields))
    if draw(st.integers(0, 9)):  # mostly present: a reply without choices is one case among many
        reply["choices"] = draw(choices)
    kind = draw(st.sampled_from(["shaped"] * 4 + ["readable"] * 4 + ["any", "raw"]))
    if kind == "readable":  # the right shape with values anywhere in their valid ranges
        reply = draw(
            st.fixed_dictionaries(
                {"choices": st.just([{"index": 0, "message": {"role": "assistant", "content": draw(valid_texts)}}])},
                optional={
                    "model": st.one_of(st.none(), valid_models, st.text(min_size=1, max_size=256)),
                    "usage": st.one_of(
                        st.none(),
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "prompt_tokens": st.integers(0, 10**8),
                                "completion_tokens": st.integers(0, 10**8),
                                "total_tokens": st.none() | st.integers(0, 10**8),
                            },
                        ),
                    ),
                },
            )
        )
    if kind == "raw":
        raw = draw(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from([b"<html><body>Bad Gateway</body></html>", b"", b"null", b'{"choices": [', b"[]"]),
                st.integers(300, 20_000).map(lambda n: b'{"x": ' + b"[" * n + b"]" * n + b"}"),
            )
        )
        return raw, None
    value = draw(json_values) if kind == "any" else reply
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass"), value


@pytest.fixture
def chat_world(table: str, model: Upstream) -> Iterator[tuple[str, str, Snapshot]]:
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c", "model": ASKED_MODEL}).body["chatId"])
    yield sid, chat, Snapshot(table)


@REPLY_SETTINGS
@given(data=st.data())
def test_no_model_reply_poisons_stored_data(
    chat_world: tuple[str, str, Snapshot], model: Upstream, data: st.DataObject
) -> None:
    sid, chat_id, snapshot = chat_world

    raw, value = data.draw(model_replies(), label="reply")
    status = data.draw(st.sampled_from([200] * 9 + [400, 429, 500, 503]), label="upstream status")
    operation = data.draw(st.sampled_from(["send_message", "send_to_active_chat", "regenerate"]), label="operation")
    model.default = Reply(status=status, raw=raw)

    if operation == "regenerate":
        result = invoke("regenerate", session=sid, chat=chat_id)
    else:
        result = invoke(operation, session=sid, chat=chat_id, body={"content": "question"})

    expected = readable_reply(value, get_settings().max_reply_bytes) if status == 200 else None
    event(f"{operation}: {'readable' if expected else 'unreadable'} -> {result.status}")
    added = [i for i in snapshot.changes()[0] if "role" in i]
    if result.status == 409:  # regenerate before any user message
        assert result.body["error"]["code"] == "nothing_to_regenerate" and added == []
    elif expected is None:
        assert result.status == (429 if status == 429 else 502), (value, result)
        assert_error_shape(result.status, result.body)
        new_user = [] if operation == "regenerate" else [("user", "unanswered", "question")]
        assert [(i["role"], i["status"], i["content"]) for i in added] == new_user
    else:
        assert result.status == 201, (value, result)
        exchange = strict(Exchange, result.body)
        reply = exchange.assistant_message
        content, model_name, prompt, completion = expected
        assert (reply.content, reply.model) == (content, model_name)
        assert reply.usage is not None
        usage = (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens)
        assert usage == (prompt, completion, prompt + completion)
        assert exchange.user_message.status == "complete"
        newest = invoke("list_messages", session=sid, chat=chat_id, query={"order": "desc", "limit": "1"})
        assert newest.body["items"] == [result.body["assistantMessage"]]
    read_everything(sid, [chat_id], page_size="5")
