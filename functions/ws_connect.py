"""WebSocket ``$connect``: the authorizer let the caller in; store the connection."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from chat_sessions import coldstart, websocket
from chat_sessions.errors import ServiceError
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.services import subscriptions
from chat_sessions.store import get_store


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        subscriptions.connect(get_store(), websocket.user_id(event), websocket.connection_id(event))
    except (ServiceError, websocket.BadFrame) as exc:  # the connection is refused
        logger.warning("connection refused", extra={"reason": str(exc)})
        return {"statusCode": getattr(exc, "status", 400)}
    return {"statusCode": 200}


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
