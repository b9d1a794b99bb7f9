"""One typed model per stored item: what the table holds, written and read through these.

Every write builds its item from one of these models and every read validates against it, so a
malformed value (a ``null`` where a map belongs, a number where text belongs, a negative token
count) is refused before it is stored, and a stored item that does not fit is noticed when read
instead of poisoning every page that contains it. Keys (``PK``/``SK``) are not part of the
models: :mod:`chat_sessions.keys` builds them, and reads ignore them.

Attribute names are the stored (camelCase) names; Python code uses the snake_case fields.
"""

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Count = Annotated[int, Field(ge=0)]
TokenCount = Annotated[int, Field(ge=0, le=10**12)]
Text = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(min_length=1, max_length=200)]

SessionStatus = Literal["active", "paused", "archived"]
Role = Literal["user", "assistant"]
MessageStatus = Literal["complete", "unanswered", "generating", "failed", "cancelled"]
"""User messages: ``unanswered`` | ``complete``. Assistant messages: ``complete``, or, for a reply
generated on its own (``Prefer: respond-async``), ``generating`` until it ends ``complete``,
``failed`` or ``cancelled``. Stored as the attribute ``status`` (the event publisher derives
``reply.completed|failed|cancelled`` from its old and new images)."""


class StoredItem(BaseModel):
    """Strict (no coercion), unknown attributes ignored on read (keys, ``type``)."""

    model_config = ConfigDict(
        strict=True, extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True, defer_build=True
    )
    item_type: str = Field(alias="type", default="")

    def to_item(self) -> dict[str, Any]:
        """The attributes to store (absent rather than null: DynamoDB items have no nulls here)."""
        return self.model_dump(by_alias=True, exclude_none=True)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Self:
        return cls.model_validate(item)


class Usage(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, defer_build=True)
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    total_tokens: TokenCount = 0


class _Totals(StoredItem):
    """Token totals are stored flat so one update expression can add to them atomically."""

    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    total_tokens: TokenCount = 0

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, total_tokens=self.total_tokens
        )


class SessionItem(_Totals):
    item_type: Literal["session"] = Field(alias="type", default="session")
    session_id: Text
    name: Name
    status: SessionStatus
    active_chat_id: Text | None = None
    chat_count: Count
    message_count: Count
    metadata: dict[str, str]
    created_at: Text
    updated_at: Text
    expires_at: Annotated[int, Field(ge=0)] | None = None
    """Epoch seconds after which DynamoDB's TTL removes the session (:mod:`chat_sessions.retention`)."""


class ForkOrigin(BaseModel):
    """Where a fork was made: the source chat and the seq its history was taken up to."""

    model_config = ConfigDict(
        strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True, defer_build=True
    )
    chat_id: Text
    seq: Count


class Segment(BaseModel):
    """One part of a fork's shared history: ``chat_id``'s messages after the previous segment's
    ``to_seq`` (0 for the first) up to ``to_seq``, stored in that chat's range."""

    model_config = ConfigDict(
        strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True, defer_build=True
    )
    chat_id: Text
    to_seq: Annotated[int, Field(ge=1)]


Lineage = Annotated[list[Segment], Field(max_length=64)]
"""A fork's shared history, oldest segment first; empty for a chat that shares nothing."""


class ChatItem(_Totals):
    """``forked_from`` and ``lineage`` are written once, by the fork that creates the chat.
    ``pinned_seq``: the highest seq of this chat's own messages some fork shares (only grows);
    deleting the chat keeps its messages up to it (the session's deletion removes them)."""

    item_type: Literal["chat"] = Field(alias="type", default="chat")
    chat_id: Text
    session_id: Text
    name: Name
    model: Text
    system_prompt: Text | None = None
    active: bool
    message_count: Count
    created_at: Text
    updated_at: Text
    forked_from: ForkOrigin | None = None
    lineage: Lineage | None = None
    pinned_seq: Count | None = None

    @property
    def shared_up_to(self) -> int:
        """The last seq of the shared history (0: none); its own messages follow."""
        return self.lineage[-1].to_seq if self.lineage else 0


class ChatHeadItem(StoredItem):
    """What a send needs of its chat, stored at the head of the chat's messages (one query
    returns it with the newest messages). Written with the chat, changed with its model or
    system prompt, purged with its messages."""

    item_type: Literal["head"] = Field(alias="type", default="head")
    chat_id: Text
    session_id: Text
    model: Text
    system_prompt: Text | None = None
    lineage: Lineage | None = None
    kept_up_to: Count | None = None
    """Set when the chat was deleted while forks shared its messages up to this seq: the head
    and those messages stay (until the session goes), the chat is gone."""
    generating_seq: Annotated[int, Field(ge=1)] | None = None
    lease_until: Annotated[int, Field(ge=0)] | None = None
    """The chat's reply in flight (``generatingSeq``) and until when it holds the chat
    (``leaseUntil``, epoch seconds): while the lease runs, nothing else is sent or regenerated in
    the chat (a condition on this item). The generation's end removes both; a generation that
    died leaves them, and the chat accepts messages again once the lease has passed."""

    @property
    def shared_up_to(self) -> int:
        return self.lineage[-1].to_seq if self.lineage else 0


class ChatBaseItem(StoredItem):
    """Seq 0 of a chat's range (``keys.base_key``), met first by a listing oldest first: a
    fork's lineage, or (``kept_up_to``) the mark of a deleted chat whose messages forks share."""

    item_type: Literal["base"] = Field(alias="type", default="base")
    chat_id: Text
    session_id: Text
    lineage: Lineage | None = None
    kept_up_to: Count | None = None


class MessageItem(StoredItem):
    """A message; assistant messages carry their usage and the seq they answer, user messages
    the seq of their first reply once answered.

    ``messageCount`` on chat and session counts a user message once it is answered (with its
    reply, in the reply's transaction): the user message's own transaction touches no counter,
    which keeps a send at the floor of write units its invariants need."""

    item_type: Literal["message"] = Field(alias="type", default="message")
    message_id: Text
    chat_id: Text
    session_id: Text
    seq: Annotated[int, Field(ge=1)]
    role: Role
    content: str
    status: MessageStatus
    model: Text | None = None
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    total_tokens: TokenCount | None = None
    tokens: Count
    reply_to_seq: Annotated[int, Field(ge=1)] | None = None
    reply_seq: Annotated[int, Field(ge=1)] | None = None
    created_at: Text
    lease_until: Annotated[int, Field(ge=0)] | None = None
    """A ``generating`` reply's lease (as on the chat head): past it, the reply is dead (its
    function crashed or timed out) and is shown ``failed``."""
    generator: Text | None = None
    """The invocation generating the reply (its claim): a second delivery of the same
    asynchronous invocation finds it taken and does nothing."""

    def shown_status(self, now: float) -> MessageStatus:
        """The status a reader sees: a ``generating`` reply whose lease has passed is ``failed``
        (its generation died; the next send or regenerate stores it so)."""
        if self.status == "generating" and self.lease_until is not None and self.lease_until < int(now):
            return "failed"
        return self.status

    @property
    def usage(self) -> Usage | None:
        if self.role != "assistant":
            return None
        return Usage(
            prompt_tokens=self.prompt_tokens or 0,
            completion_tokens=self.completion_tokens or 0,
            total_tokens=self.total_tokens or 0,
        )


class QuotaItem(StoredItem):
    """The user's active-session counter (invariant: equals their sessions with status active)."""

    active_sessions: Count = 0


class ErasureMarkerItem(StoredItem):
    """What ``DELETE /me`` adds to the user's counters item (``keys.quota_key``) while the
    user is erased (attribute names: ``keys.ERASING_SINCE``, ``ERASING_SESSION``,
    ``ERASURE_RUNS``); the counters themselves are read elsewhere."""

    erasing_since: Text
    erasing_session: Text | None = None
    erasure_runs: Count = 0


class ExpiredReceiptItem(StoredItem):
    """Written once per session that DynamoDB's TTL removed, in the transaction that takes it
    off the user's counters: a redelivered stream record finds it and counts nothing. It expires
    itself once no stream record can be redelivered (records live 24 hours)."""

    item_type: Literal["expired"] = Field(alias="type", default="expired")
    session_id: Text
    expires_at: Annotated[int, Field(ge=0)]


class CreateMarkerItem(StoredItem):
    """Written with a session or chat created under an ``Idempotency-Key``: which one that key
    created, so a repeat after a failure whose write DynamoDB committed answers it."""

    item_type: Literal["created"] = Field(alias="type", default="created")
    session_id: Text
    chat_id: Text | None = None
    request_hash: Text
    expires_at: Annotated[int, Field(ge=0)]


class SendMarkerItem(StoredItem):
    """Written with a user message sent under an ``Idempotency-Key`` (which message that key
    stored, so a repeat after a failure answers that message instead of storing another), or
    with a reply regenerated under one (``reply_seq``: the reply that key stored)."""

    item_type: Literal["send"] = Field(alias="type", default="send")
    session_id: Text
    chat_id: Text
    seq: Annotated[int, Field(ge=1)]
    message_id: Text
    reply_seq: Annotated[int, Field(ge=1)] | None = None
    request_hash: Text
    expires_at: Annotated[int, Field(ge=0)]


def checked_changes(model: type[StoredItem], sets: dict[str, Any], removes: list[str]) -> None:
    """Refuse a partial update (stored names) that would leave an item of ``model`` invalid:
    every value set must fit its field, and only optional fields may be removed."""
    from pydantic import TypeAdapter

    by_alias = {info.alias or name: info for name, info in model.model_fields.items()}
    for name, value in sets.items():
        info = by_alias.get(name)
        if info is None:
            raise ValueError(f"{model.__name__} has no attribute {name}")
        field_type: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(field_type)
        adapter.validate_python(value, strict=True)
    for name in removes:
        info = by_alias.get(name)
        if info is None or info.default is not None or info.is_required():
            raise ValueError(f"{model.__name__}.{name} cannot be removed")
