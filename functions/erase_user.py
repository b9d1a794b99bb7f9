"""DynamoDB stream consumer: one bounded step of each user erasure a record names (DELETE /me).

Not an HTTP route. The template subscribes it to the table's stream, filtered to writes of a
user's counters item that carry the erasure marker (``keys.ERASING_SINCE``): ``DELETE /me``
writes it first, and each step that leaves work behind writes it again, so the next step is
the next record. Records of one user in a batch make one step. A failed step is reported so
Lambda retries from its record (then sends it to the dead-letter queue; a repeated
``DELETE /me`` starts the chain again).
"""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from chat_sessions import coldstart, keys
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.services.erasure import erase_step
from chat_sessions.store import get_store

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def user_of(record: DynamoDBRecord) -> str | None:
    """The user whose counters item the record is of (None for any other item)."""
    if record.dynamodb is None:
        return None
    item_keys = record.dynamodb.keys
    if str(item_keys.get(keys.SK)) != keys.QUOTA_SK:
        return None
    return keys.user_of_pk(str(item_keys.get(keys.PK)))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    stepped: set[str] = set()

    def step(record: DynamoDBRecord) -> None:
        user_id = user_of(record)
        if user_id is None or user_id in stepped:
            return
        result = erase_step(get_store(), user_id)
        stepped.add(user_id)
        logger.info("erasure step", extra={"deleted": result.deleted, "done": result.done})

    return process_partial_response(event=event, record_handler=step, processor=processor, context=context)


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
