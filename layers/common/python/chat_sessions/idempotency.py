"""``Idempotency-Key`` for POST requests, on Powertools Idempotency.

Records live in the same single table: Powertools' key attributes are mapped onto ``PK``/``SK``,
the partition is the caller's own (``keys.idempotency_pk``), so a key is scoped per user by
construction. The record's key is the operation name and the header value; its validation
hash covers method, path and body, so the same key with another request is refused (422), a
repeat returns the stored response, and a repeat while the first is still running gets 409.
Failed requests leave no record (Powertools deletes it), so a retry after a 502 runs again.
When Powertools' own writes fail (throttled, or an answer lost past the SDK's retries), the
request releases the claim it may have left, so a retry runs instead of meeting "in progress".

Powertools Idempotency is imported by the first request that sends a key, not at import: most
requests (every GET, a POST without the header) never need it, and its import is a cold-start
cost of every HTTP handler otherwise (README, "Cold start"). The key's check needs only ``re``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from chat_sessions import keys
from chat_sessions.config import get_settings
from chat_sessions.errors import Conflict, IdempotencyKeyReused, ServiceError, ValidationFailed
from chat_sessions.observability import logger
from chat_sessions.store import plain_dynamodb_client

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

HEADER = "idempotency-key"
KEY_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$"
"""1..128 printable ASCII characters, neither first nor last a space: HTTP trims the spaces around
a header value, so a key that began or ended with one could not arrive as it was sent."""
_KEY_RE = re.compile(KEY_PATTERN)
EXPIRY_ATTR = "expiresAt"

_lambda_context: ContextVar[Any] = ContextVar("idempotency_lambda_context", default=None)
_import_lock = threading.Lock()


def _import_powertools() -> None:
    """Import Powertools Idempotency on first use; every use of it here goes through this. Of
    concurrent first requests (threads of one process, as the concurrency tests run them), one
    imports and the others wait. Python's per-module import locks serialise one import too, but
    in a concurrent circular import they hand one thread a partially initialised module."""
    with _import_lock:
        import aws_lambda_powertools.utilities.idempotency
        import aws_lambda_powertools.utilities.idempotency.exceptions  # noqa: F401


def register_lambda_context(context: Any) -> None:
    """The invocation's Lambda context, for Powertools to bound an in-progress record by the
    time the invocation has left (called by every HTTP handler, before it routes)."""
    _lambda_context.set(context)


def _config() -> IdempotencyConfig:
    """One per request, with the request's own Lambda context (a ContextVar: requests running
    as threads of one process each see their own)."""
    _import_powertools()
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        use_local_cache=False,
        expires_after_seconds=get_settings().idempotency_ttl_seconds,
        lambda_context=_lambda_context.get(),
    )


def checked_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY_RE.fullmatch(value):
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 128 printable ASCII characters, not starting or ending with a space.",
            details=[{"loc": ["header", "Idempotency-Key"], "type": "invalid_idempotency_key"}],
        )
    return value


OWNER_ATTR = "owner"
STATUS_ATTR = "status"  # Powertools' record status attribute, and its value while a request runs
IN_PROGRESS = "INPROGRESS"
RELEASE_ATTEMPTS = 3  # each is the SDK's own 3 tries


class _OwnedClaims:
    """The DynamoDB client Powertools uses, with each in-progress claim marked by its owner.

    Powertools claims a key with a conditional ``PutItem``. When DynamoDB commits that put and
    its answer is lost, the SDK replays it, the condition now fails on the record just written,
    and Powertools would report the request as "still in progress" to itself. The claim here
    carries an owner token, one per request, and its condition also admits a record with the
    same owner, so the replay succeeds and only other requests see the key as taken.
    """

    def __init__(self, client: Any, owner: str) -> None:
        self._client = client
        self._owner = owner
        self._claimed: tuple[str, dict[str, Any]] | None = None  # (table, key) of the claim tried

    def put_item(self, **kwargs: Any) -> Any:
        self._claimed = (kwargs["TableName"], {k: kwargs["Item"][k] for k in (keys.PK, keys.SK)})
        kwargs["Item"] = {**kwargs["Item"], OWNER_ATTR: {"S": self._owner}}
        kwargs["ConditionExpression"] = f"({kwargs['ConditionExpression']}) OR #owner = :owner"
        kwargs["ExpressionAttributeNames"] = {**kwargs.get("ExpressionAttributeNames", {}), "#owner": OWNER_ATTR}
        kwargs["ExpressionAttributeValues"] = {
            **kwargs.get("ExpressionAttributeValues", {}),
            ":owner": {"S": self._owner},
        }
        return self._client.put_item(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        """Powertools completes its record with an ``UpdateItem``, which would create the record
        if it were gone: only this request's own claim is completed. ``DELETE /me`` may have
        erased it while the request ran, and must not find it written back afterwards; the
        refusal reaches :func:`run_once` as a persistence error, which answers what was produced."""
        kwargs["ConditionExpression"] = "#owner = :owner"
        kwargs["ExpressionAttributeNames"] = {**kwargs.get("ExpressionAttributeNames", {}), "#owner": OWNER_ATTR}
        kwargs["ExpressionAttributeValues"] = {
            **kwargs.get("ExpressionAttributeValues", {}),
            ":owner": {"S": self._owner},
        }
        return self._client.update_item(**kwargs)

    def release(self) -> bool:
        """Delete this request's claim if it is still in progress, and only then.

        Called when Powertools' own writes failed: the claim may have landed (its answer lost),
        or the write that would have completed or removed it may not have. Left in place, it
        would answer every retry "still in progress" until it expires. The conditions keep the
        delete to this request's own unfinished claim: another request's claim, or a record a
        lost answer had in fact completed (a retry must replay it), stays. True when nothing of
        this request's is left in progress."""
        if self._claimed is None:
            return True
        table, key = self._claimed
        for _ in range(RELEASE_ATTEMPTS):
            try:
                self._client.delete_item(
                    TableName=table,
                    Key=key,
                    ConditionExpression="#owner = :owner AND #status = :in_progress",
                    ExpressionAttributeNames={"#owner": OWNER_ATTR, "#status": STATUS_ATTR},
                    ExpressionAttributeValues={":owner": {"S": self._owner}, ":in_progress": {"S": IN_PROGRESS}},
                )
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return True
            except BotoCoreError:
                pass
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def run_once(
    user_id: str, operation: str, key: str, request: dict[str, Any], produce: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``produce`` at most once per (user, operation, key); return its stored result.

    When Powertools cannot write its record, the claim is released (:meth:`_OwnedClaims.release`)
    and the error goes on to the caller (429/503), unless ``produce`` had already finished: then
    its result is the answer, and a repeat finds what it stored through the operation's own
    marker (creates, sends and regenerates keep one) or meets a state change already made.

    A persistence failure goes on as the DynamoDB error Powertools wrapped, which the HTTP layer
    answers as any other (throttled 429, unavailable 503, a collision 409); another cause stays
    Powertools' error (a 500)."""
    _import_powertools()
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyInconsistentStateError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    config = _config()
    claims = _OwnedClaims(plain_dynamodb_client(), str(uuid.uuid4()))
    persistence = DynamoDBPersistenceLayer(
        table_name=get_settings().table_name,
        key_attr=keys.PK,
        sort_key_attr=keys.SK,
        static_pk_value=keys.idempotency_pk(user_id),
        expiry_attr=EXPIRY_ATTR,
        boto3_client=cast(Any, claims),
    )
    produced: list[dict[str, Any]] = []

    def once(call: dict[str, Any]) -> dict[str, Any]:
        produced.append(produce())
        return produced[0]

    guarded = idempotent_function(
        data_keyword_argument="call", persistence_store=persistence, config=config, key_prefix=operation
    )(once)
    try:
        result: dict[str, Any] = guarded(call={"key": key, "request": request})
    except IdempotencyPersistenceLayerError as exc:
        released = claims.release()
        logger.warning(
            "idempotency record not written",
            extra={"operation": operation, "claim_released": released, "produced": bool(produced)},
        )
        if produced:
            return produced[0]
        cause = exc.__cause__
        if isinstance(cause, ClientError | BotoCoreError | ServiceError):
            raise cause from None
        raise
    except IdempotencyValidationError as exc:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.") from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.") from exc
    except IdempotencyInconsistentStateError as exc:  # the record changed under Powertools' feet
        raise Conflict("A concurrent request with this Idempotency-Key changed its record; retry.") from exc
    return result
