"""POST /sessions: a new session, active, with no chat yet (counts against the active quota)."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from chat_sessions import api
from chat_sessions.models import CreateSessionRequest, Session
from chat_sessions.services import sessions
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions", summary="Create a session", tags=["sessions"], responses=api.responses(201, Session, 409, 413, 422)
)
def create_session(body: Annotated[CreateSessionRequest, Body()], key: api.IdempotencyKey = None) -> Response[Any]:
    return api.respond(
        router, 201, lambda: sessions.create_session(get_store(), api.user_id(router), body, api.request_key(router))
    )


lambda_handler = api.lambda_handler_for(router)
