"""DynamoDB stream consumer: finishes purging what a deleted session or chat owned, and takes
a session that retention (DynamoDB TTL) removed off the user's counters, exactly once.

Not an HTTP route. The template subscribes it to the table's stream, filtered to ``REMOVE``
events of session and chat items; failed records are reported one by one so Lambda retries only
those (then sends them to the dead-letter queue).
"""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

from chat_sessions import coldstart, keys
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.services.cleanup import count_expired, is_ttl_removal, purge_children
from chat_sessions.store import get_store

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def purge_record(record: DynamoDBRecord) -> None:
    if record.event_name != DynamoDBRecordEventName.REMOVE or record.dynamodb is None:
        return
    item_keys = record.dynamodb.keys
    pk, sk = str(item_keys[keys.PK]), str(item_keys[keys.SK])
    store = get_store()
    # Counted before the purge: a purge that fails retries the record, which counts nothing twice.
    if is_ttl_removal(record.user_identity) and count_expired(store, pk, sk, record.dynamodb.old_image, time.time()):
        logger.info("expired session taken off the user's counters", extra={"sk": sk})
    left = purge_children(store, pk, sk)
    if left:
        logger.info("purged leftovers of a deleted item", extra={"items": left})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return process_partial_response(event=event, record_handler=purge_record, processor=processor, context=context)


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
