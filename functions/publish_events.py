"""DynamoDB stream consumer: publishes the domain events of the table's changes on the EventBridge bus.

Not an HTTP route. The template subscribes it to the table's stream (inserts and changes of
sessions, chats and messages, and removals); :mod:`chat_sessions.events` decides each record's
event from its images alone (no read) and puts the batch's events on ``EVENT_BUS_NAME`` in stream
order. When EventBridge refuses one, that record and every record after it are reported failed,
so Lambda retries from there and each session's events stay in order (a retried event may be
published twice: its ``changeId`` is the same).
"""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from chat_sessions import coldstart, events
from chat_sessions.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class NotPublished(Exception):
    """This record's event (or an earlier one of the batch) was not accepted by the bus."""


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    records = event.get("Records") or []
    published, first_failed = events.publish(records, os.environ["EVENT_BUS_NAME"], events.events_client())
    failed = set() if first_failed is None else {r["dynamodb"]["SequenceNumber"] for r in records[first_failed:]}
    if failed:
        logger.warning("events not accepted by the bus; retrying from the first", extra={"records": len(failed)})
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=published)

    def check(record: DynamoDBRecord) -> None:
        if record.dynamodb is not None and record.dynamodb.sequence_number in failed:
            raise NotPublished(record.dynamodb.sequence_number)

    return process_partial_response(event=event, record_handler=check, processor=processor, context=context)


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
