"""What a DynamoDB error means for the service: the one place that reads error codes and
transaction cancellation reasons.

Real DynamoDB answers a request in more ways than moto or DynamoDB Local ever do, and each needs
its own reaction:

- a condition failed (``ConditionalCheckFailed``, for one item of a transaction or a single
  write): what was read is stale, or the request is refused; :class:`ConditionFailed` says at
  which item, so callers can tell "the quota is full" from "someone moved the pointer";
- a collision (``TransactionConflict`` reasons, ``TransactionConflictException``,
  ``TransactionInProgressException``): nothing was refused, the same decision is retried;
  :class:`Collision`, never reported as a limit or a state;
- throttling, in any of its spellings: ``429 rate_limited`` with ``Retry-After``;
- unavailability (5xx, timeouts, connection failures after the SDK's own retries):
  ``503 unavailable`` with ``Retry-After``. The write may have been committed: every
  transaction carries a ``ClientRequestToken`` and every append checks whether its own earlier
  attempt landed, so a retry never applies it twice.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from chat_sessions.errors import RETRY_AFTER_SECONDS, RateLimited, Unavailable

NO_REASON = "None"
CONDITION_FAILED = "ConditionalCheckFailed"
_COLLISION_REASONS = {"TransactionConflict"}
_THROTTLING_REASONS = {"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
_COLLISIONS = {"TransactionConflictException", "TransactionInProgressException"}
THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
}
_UNAVAILABLE = {"InternalServerError", "ServiceUnavailable", "InternalFailure"}


class ConditionFailed(Exception):
    """A condition was false when DynamoDB evaluated it. ``reasons`` holds the cancellation
    code per transaction item (``"None"`` for items that were fine); a single write has one."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == CONDITION_FAILED


class Collision(Exception):
    """DynamoDB refused to run the request alongside a concurrent one; nothing was decided."""


def _throttled() -> RateLimited:
    return RateLimited(
        "Too many requests to the database right now; retry shortly.", headers={"Retry-After": RETRY_AFTER_SECONDS}
    )


def unavailable() -> Unavailable:
    return Unavailable(
        "The database is unavailable right now; retry shortly.", headers={"Retry-After": RETRY_AFTER_SECONDS}
    )


def classify(exc: Exception) -> Exception:
    """The exception to raise in place of ``exc`` (``exc`` itself when it is none of these:
    a validation error from DynamoDB is a bug and stays a 500)."""
    if isinstance(exc, BotoCoreError):  # connection refused, read timeout... after the SDK's retries
        return unavailable()
    if not isinstance(exc, ClientError):
        return exc
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    if code == "TransactionCanceledException":
        reasons = [str(r.get("Code") or NO_REASON) for r in exc.response.get("CancellationReasons", [])]
        if CONDITION_FAILED in reasons:
            return ConditionFailed(reasons)
        if _COLLISION_REASONS.intersection(reasons):
            return Collision(", ".join(reasons))
        if _THROTTLING_REASONS.intersection(reasons):
            return _throttled()
        return exc
    if code == "ConditionalCheckFailedException":
        return ConditionFailed([CONDITION_FAILED])
    if code in _COLLISIONS:
        return Collision(code)
    if code in THROTTLING:
        return _throttled()
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _UNAVAILABLE or status >= 500:
        return unavailable()
    return exc
