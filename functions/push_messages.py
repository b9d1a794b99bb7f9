"""DynamoDB stream consumer: a ``message`` frame to a chat's WebSocket subscribers whenever a
message of the chat is stored or changes status.

Not an HTTP route. The template's filter passes only ``INSERT`` and ``MODIFY`` records of
message items; this keeps a new message and a change of ``status`` (``generating`` to
``complete``, a question becoming ``complete``...) and skips anything else that is not a
message and the content flushes of a generating reply (same status: the ``delta`` frames carry
those).
The frame is built from the record's new image alone, no read. Pushes never fail the batch
(``chat_sessions.push`` logs a lost frame): a retried batch would only repeat frames.
"""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)
from pydantic import ValidationError

from chat_sessions import coldstart, keys, push
from chat_sessions.items import MessageItem
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.store.table import plain
from chat_sessions.views import message_view

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def message_frame_of(record: DynamoDBRecord) -> tuple[str, str, dict[str, Any]] | None:
    """The chat (partition, chat id) and the Message a record stands for, or None when it is
    nothing to push."""
    if record.dynamodb is None or record.event_name not in (
        DynamoDBRecordEventName.INSERT,
        DynamoDBRecordEventName.MODIFY,
    ):
        return None
    item_keys = record.dynamodb.keys or {}
    chat = keys.message_chat(str(item_keys.get(keys.PK, "")), str(item_keys.get(keys.SK, "")))
    new = plain(record.dynamodb.new_image or {})
    if chat is None or new.get("type") != "message":
        return None
    if record.event_name == DynamoDBRecordEventName.MODIFY:
        old = record.dynamodb.old_image or {}
        if old.get("status") == new.get("status"):
            return None  # a generating reply's content flush: the deltas carry it
    message = message_view(MessageItem.from_item(new)).model_dump(mode="json", by_alias=True)
    return chat[0], chat[1], message


def push_record(record: DynamoDBRecord) -> None:
    try:
        found = message_frame_of(record)
    except ValidationError:  # an item this code cannot read (a newer writer's): retrying would not help
        logger.warning("message image not pushed", exc_info=True)
        return
    if found is not None:
        push.push_message(*found)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    with push.one_read_per_chat():  # a chat's subscribers: one query per batch, not per record
        return process_partial_response(event=event, record_handler=push_record, processor=processor, context=context)


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
