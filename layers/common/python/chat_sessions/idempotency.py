"""``Idempotency-Key`` for POST requests, on Powertools Idempotency.

Records live in the same single table: Powertools' key attributes are mapped onto ``PK``/``SK``,
the partition is the caller's own (``keys.idempotency_pk``), so a key is scoped per user by
construction. The record's key is the operation name and the header value; its validation
hash covers method, path and body, so the same key with another request is refused (422), a
repeat returns the stored response, and a repeat while the first is still running gets 409.
Failed requests leave no record (Powertools deletes it), so a retry after a 502 runs again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyValidationError,
)

from chat_sessions import keys
from chat_sessions.config import get_settings
from chat_sessions.errors import Conflict, IdempotencyKeyReused, ValidationFailed
from chat_sessions.store import plain_dynamodb_client

HEADER = "idempotency-key"
KEY_PATTERN = r"^[\x20-\x7e]{1,128}$"
_KEY_RE = re.compile(KEY_PATTERN)
EXPIRY_ATTR = "expiresAt"

config = IdempotencyConfig(
    event_key_jmespath="key",
    payload_validation_jmespath="request",
    raise_on_no_idempotency_key=True,
    use_local_cache=False,
    expires_after_seconds=get_settings().idempotency_ttl_seconds,
)


def checked_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY_RE.match(value):
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 128 printable ASCII characters.",
            details=[{"loc": ["header", "Idempotency-Key"], "type": "invalid_idempotency_key"}],
        )
    return value


OWNER_ATTR = "owner"


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

    def put_item(self, **kwargs: Any) -> Any:
        kwargs["Item"] = {**kwargs["Item"], OWNER_ATTR: {"S": self._owner}}
        kwargs["ConditionExpression"] = f"({kwargs['ConditionExpression']}) OR #owner = :owner"
        kwargs["ExpressionAttributeNames"] = {**kwargs.get("ExpressionAttributeNames", {}), "#owner": OWNER_ATTR}
        kwargs["ExpressionAttributeValues"] = {
            **kwargs.get("ExpressionAttributeValues", {}),
            ":owner": {"S": self._owner},
        }
        return self._client.put_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def run_once(
    user_id: str, operation: str, key: str, request: dict[str, Any], produce: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``produce`` at most once per (user, operation, key); return its stored result."""
    persistence = DynamoDBPersistenceLayer(
        table_name=get_settings().table_name,
        key_attr=keys.PK,
        sort_key_attr=keys.SK,
        static_pk_value=keys.idempotency_pk(user_id),
        expiry_attr=EXPIRY_ATTR,
        boto3_client=cast(Any, _OwnedClaims(plain_dynamodb_client(), str(uuid.uuid4()))),
    )

    def once(call: dict[str, Any]) -> dict[str, Any]:
        return produce()

    guarded = idempotent_function(
        data_keyword_argument="call", persistence_store=persistence, config=config, key_prefix=operation
    )(once)
    try:
        result: dict[str, Any] = guarded(call={"key": key, "request": request})
    except IdempotencyValidationError as exc:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.") from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.") from exc
    except IdempotencyInconsistentStateError as exc:  # the record changed under Powertools' feet
        raise Conflict("A concurrent request with this Idempotency-Key changed its record; retry.") from exc
    return result
