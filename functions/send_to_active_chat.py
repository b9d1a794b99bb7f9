"""POST /sessions/{sessionId}/messages: send to whichever chat is active in the session."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from chat_sessions import api
from chat_sessions.llm import get_chat_model
from chat_sessions.models import Exchange, SendMessageRequest
from chat_sessions.services import conversation
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions/<sessionId>/messages",
    summary="Send a message to the active chat",
    tags=["messages"],
    responses=api.responses(201, Exchange, 409, 413, 422, 429, 502, 504),
)
def send_to_active_chat(
    sessionId: str, body: Annotated[SendMessageRequest, Body()], key: api.IdempotencyKey = None
) -> Response[Any]:
    return api.respond(
        router,
        201,
        lambda: conversation.send_message(
            get_store(), get_chat_model(), api.user_id(router), sessionId, None, body.content, api.request_key(router)
        ),
    )


lambda_handler = api.lambda_handler_for(router)
