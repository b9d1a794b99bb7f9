"""Pydantic models for every request and response body of the HTTP contract.

Requests are strict (no type coercion) and forbid unknown fields, so a typo in a client is a
400 with details rather than a silently ignored field.
"""

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

MAX_CONTENT = 32_000
Name = Annotated[str, Field(min_length=1, max_length=200)]
Content = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)]
ModelName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@+-]+$")]
SystemPrompt = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=128)]
MetadataValue = Annotated[str, Field(max_length=1024)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]


def _no_default(schema: dict[str, Any]) -> None:
    """A PATCH field's ``None`` default means "absent, unchanged", not a value to send: the
    document shows the field as optional, without ``"default": null``."""
    schema.pop("default", None)


UNCHANGED: Any = Field(default=None, json_schema_extra=_no_default)
"""The default of a PATCH field that may be left out but not sent as ``null``. Its type is
``X | SkipJsonSchema[None]``: ``None`` stands for "absent" in Python, and the document (which
says what a client may send) leaves ``null`` out; the field's validator refuses an explicit
``null`` with a 400."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_floats_are_integers(cls, data: Any) -> Any:
        """JSON does not tell ``3`` from ``3.0`` (JSON Schema counts both as the integer 3, and
        JavaScript writes no ``.0``), but a strict model refuses a float for an ``int``: an
        integer field takes a float without a fraction as that integer. Strings, booleans and
        ``3.5`` stay refused (found by Schemathesis: ``{"uptoSeq": 6279659690.0}`` was a 400)."""
        if not isinstance(data, dict):
            return data
        whole = {
            key: int(value)
            for key, value in data.items()
            if type(value) is float and value.is_integer() and key in _integer_fields(cls)
        }
        return {**data, **whole} if whole else data


def _integer_fields(model: type[BaseModel]) -> set[str]:
    """The names (aliases) of a model's fields typed ``int`` or ``int | None``."""
    return {
        info.alias or name
        for name, info in model.model_fields.items()
        if info.annotation is int or int in get_args(info.annotation)
    }


class _Response(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, defer_build=True
    )


class CreateSessionRequest(_Request):
    name: Name
    metadata: Metadata | None = None


class UpdateSessionRequest(_Request):
    """PATCH: only the fields present change; ``metadata`` replaces the whole map (``{}``
    empties it). Neither may be ``null``."""

    # None is only the "absent" default, never a value a client may send: a session always has
    # a name and a metadata map, and a stored null broke every later read of the session.
    name: Name | SkipJsonSchema[None] = UNCHANGED
    metadata: Metadata | SkipJsonSchema[None] = UNCHANGED

    @field_validator("name", "metadata")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class CreateChatRequest(_Request):
    name: Name
    model: ModelName | None = None
    system_prompt: SystemPrompt | None = None


class UpdateChatRequest(_Request):
    """PATCH: only the fields present change; ``systemPrompt: null`` removes the prompt."""

    name: Name | SkipJsonSchema[None] = UNCHANGED
    model: ModelName | SkipJsonSchema[None] = UNCHANGED
    system_prompt: SystemPrompt | None = Field(default=None, json_schema_extra=_no_default)

    @field_validator("name", "model")
    @classmethod
    def _not_null(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("cannot be null")
        return value


class SendMessageRequest(_Request):
    content: Content


class ForkChatRequest(_Request):
    """A fork of the chat at ``uptoSeq`` (0..the chat's last seq). Without ``name``, the
    source's name with " (fork)" after it."""

    name: Name | None = None
    upto_seq: Annotated[int, Field(ge=0)]


class EditMessageRequest(_Request):
    content: Content


class Usage(_Response):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Session(_Response):
    session_id: str
    name: str
    status: Literal["active", "paused", "archived"]
    active_chat_id: str | None
    chat_count: int
    message_count: int
    usage: Usage
    metadata: dict[str, str]
    created_at: str
    updated_at: str
    expires_at: str | None = Field(
        description="When retention removes the session (RETENTION_DAYS, or ARCHIVED_RETENTION_DAYS when archived) "
        "unless it is written before; null: kept. Past but still readable: due for removal (README, Retention)."
    )


class ForkedFrom(_Response):
    """The chat a fork was made from and the seq its shared history ends at."""

    chat_id: str
    seq: int


class Chat(_Response):
    """``messageCount`` and ``usage`` count what the chat stored itself: a fork's shared
    history is counted once, on the chat that stored it."""

    chat_id: str
    session_id: str
    name: str
    model: str
    system_prompt: str | None
    active: bool
    message_count: int
    usage: Usage
    created_at: str
    updated_at: str
    forked_from: ForkedFrom | None


class Message(_Response):
    message_id: str
    chat_id: str
    session_id: str
    seq: int
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "unanswered", "generating", "failed", "cancelled"] = Field(
        description="User messages: unanswered | complete. Replies: complete, or (Prefer: respond-async) "
        "generating until complete, failed (what was generated kept) or cancelled."
    )
    model: str | None
    usage: Usage | None
    created_at: str


class SessionPage(_Response):
    items: list[Session]
    next_cursor: str | None


class ChatPage(_Response):
    items: list[Chat]
    next_cursor: str | None


class MessagePage(_Response):
    items: list[Message]
    next_cursor: str | None


class Exchange(_Response):
    """What a send or a regenerate answers: the user's message and the model's reply."""

    user_message: Message
    assistant_message: Message


class EditResult(_Response):
    """What an edit answers: the fork it made and the exchange sent there."""

    chat: Chat
    user_message: Message
    assistant_message: Message


class SessionCounts(_Response):
    active: int
    paused: int
    archived: int


class UserUsage(_Response):
    """``GET /me/usage``: the caller's sessions by status, chats and messages (as the sessions
    count them), tokens used ever (``usage``, deleted sessions' too) and in this calendar month
    (UTC, ``period``), and the month's budget (null: none)."""

    sessions: SessionCounts
    chats: int
    messages: int
    usage: Usage
    period: str
    period_usage: Usage
    token_budget: int | None


class Erasure(_Response):
    """``DELETE /me``: the erasure of every item of the caller has begun (or is still running);
    it finishes on its own, after which the caller has no sessions and zero usage."""

    status: Literal["erasing"] = "erasing"


class ErrorDetail(_Response):
    code: str
    message: str
    details: list[dict[str, object]] | None = None


class ErrorBody(_Response):
    error: ErrorDetail
