"""POST /sessions/{sessionId}/chats/{chatId}/messages: send to a chat (it must be the active one)."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from chat_sessions import api
from chat_sessions.llm import get_chat_model
from chat_sessions.models import SendMessageRequest
from chat_sessions.services import conversation
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions/<sessionId>/chats/<chatId>/messages",
    summary="Send a message to a chat",
    tags=["messages"],
    responses=api.exchange_responses(409, 413, 422, 429, 502, 504),
)
def send_message(
    sessionId: str,
    chatId: str,
    body: Annotated[SendMessageRequest, Body()],
    key: api.IdempotencyKey = None,
    prefer: api.Prefer = None,
) -> Response[Any]:
    respond_async = api.prefers_async(router)
    return api.respond(
        router,
        202 if respond_async else 201,
        lambda: conversation.send_message(
            get_store(),
            get_chat_model(),
            api.user_id(router),
            sessionId,
            chatId,
            body.content,
            api.request_key(router),
            respond_async=respond_async,
        ),
    )


lambda_handler = api.lambda_handler_for(router)
