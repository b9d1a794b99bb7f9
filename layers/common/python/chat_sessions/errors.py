"""Every error the service can answer with, as plain exceptions.

Service and store code raise these; one place (``api``) turns them into the contract's
``{"error": {"code", "message"}}`` bodies, so a status code is never chosen twice.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base: an HTTP status, a snake_case code and a message for a person."""

    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class ValidationFailed(ServiceError):
    status, code = 400, "validation_error"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class ChatNotActive(Conflict):
    code = "chat_not_active"


class SessionPaused(Conflict):
    code = "session_paused"


class NoActiveChat(Conflict):
    code = "no_active_chat"


class SessionLimitReached(Conflict):
    code = "session_limit_reached"


class NothingToRegenerate(Conflict):
    code = "nothing_to_regenerate"


class SessionArchived(Conflict):
    """The session is archived: read-only until unarchived."""

    code = "session_archived"


class ReplyInProgress(Conflict):
    """The chat has a reply still generating (``Prefer: respond-async``): one at a time."""

    code = "reply_in_progress"


class NotGenerating(Conflict):
    """Cancel of a message that is not a reply being generated."""

    code = "not_generating"


class ErasureInProgress(Conflict):
    """``DELETE /me`` is erasing the caller: no session is created until it has finished
    (``Retry-After``: seconds to wait); everything else the caller had is being deleted."""

    code = "erasure_in_progress"


ERASURE_RETRY_AFTER_SECONDS = "5"
"""What ``Retry-After`` says to a create refused by an erasure: a batch takes about a second."""


class IdempotencyKeyReused(ServiceError):
    status, code = 422, "idempotency_key_reused"


class RateLimited(ServiceError):
    status, code = 429, "rate_limited"


class TokenBudgetExhausted(ServiceError):
    """The caller's tokens this month reached ``MONTHLY_TOKEN_BUDGET``; ``Retry-After`` says
    when the next month begins."""

    status, code = 429, "token_budget_exhausted"


RETRY_AFTER_SECONDS = "1"
"""What ``Retry-After`` says when DynamoDB throttles or is unavailable: its own backoff is short."""


class UpstreamError(ServiceError):
    status, code = 502, "upstream_error"


class UpstreamTimeout(ServiceError):
    status, code = 504, "upstream_timeout"


class StoreContention(ServiceError):
    """Optimistic writes kept losing to concurrent ones (or DynamoDB kept cancelling them as
    collisions); the caller may retry."""

    status, code = 409, "conflict"


class Unavailable(ServiceError):
    """DynamoDB could not be reached or answered 5xx after the SDK's retries. The write may or
    may not have been committed; every write carries a token and a check that makes a retry
    safe, so the caller may retry."""

    status, code = 503, "unavailable"


class ForkTooDeep(Conflict):
    """A fork whose history would span more chats than ``MAX_FORK_DEPTH`` allows."""

    code = "fork_too_deep"
