"""The generating function: one reply asked with ``Prefer: respond-async``, invoked
asynchronously (``InvocationType=Event``) by the send or regenerate that stored it
``generating``. Not an HTTP route; its event is ``{"userId", "sessionId", "chatId", "seq",
"messageId"}``. See :mod:`chat_sessions.services.generation`."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from chat_sessions import coldstart, invocation
from chat_sessions.llm import get_chat_model
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.services import generation, replies
from chat_sessions.store import get_store


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    user_id, session_id, chat_id, seq, message_id = replies.check_event(event)
    logger.append_keys(sessionId=session_id, chatId=chat_id, messageId=message_id)
    with invocation.running(context):
        outcome = generation.generate(
            get_store(),
            get_chat_model(),  # type: ignore[arg-type]  # OpenAIChatModel streams too
            user_id,
            session_id,
            chat_id,
            seq,
            getattr(context, "aws_request_id", "") or message_id,
        )
    logger.info("generation ended", extra={"outcome": outcome})
    return {"outcome": outcome}


coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
