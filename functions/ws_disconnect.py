"""WebSocket ``$disconnect``: delete the connection and its subscriptions (API Gateway calls it
best effort; the items' ``expiresAt`` removes what a missed call leaves)."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from chat_sessions import coldstart, websocket
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.services import subscriptions
from chat_sessions.store import get_store


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    removed = subscriptions.disconnect(get_store(), websocket.user_id(event), websocket.connection_id(event))
    logger.info("disconnected", extra={"subscriptions": removed})
    return {"statusCode": 200}


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
