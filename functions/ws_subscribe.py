"""WebSocket ``subscribe`` (and ``$default``): ``{"action": "subscribe", "sessionId", "chatId"}``
subscribes the connection to one of the caller's chats; the answer is a frame:
``{"type": "subscribed", "sessionId", "chatId"}`` or ``{"type": "error", "code", "message"}``
(``not_found`` for a chat that is not the caller's)."""

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
        request = websocket.subscribe_request(event)
        subscriptions.subscribe(
            get_store(),
            websocket.user_id(event),
            websocket.connection_id(event),
            request.session_id,
            request.chat_id,
        )
    except websocket.BadFrame as exc:
        return websocket.reply(websocket.error_frame("validation_error", str(exc)))
    except ServiceError as exc:
        return websocket.reply(websocket.service_error_frame(exc))
    return websocket.reply({"type": "subscribed", "sessionId": request.session_id, "chatId": request.chat_id})


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
