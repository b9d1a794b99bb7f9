"""PATCH /sessions/{sessionId}: rename a session or replace its metadata."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from chat_sessions import api
from chat_sessions.models import Session, UpdateSessionRequest
from chat_sessions.services import sessions
from chat_sessions.store import get_store

router = Router()


@router.patch(
    "/sessions/<sessionId>",
    summary="Update a session's name or metadata",
    tags=["sessions"],
    responses=api.responses(200, Session, 413),
)
def update_session(sessionId: str, body: Annotated[UpdateSessionRequest, Body()]) -> Response[Any]:
    return api.respond(router, 200, lambda: sessions.update_session(get_store(), api.user_id(router), sessionId, body))


lambda_handler = api.lambda_handler_for(router)
