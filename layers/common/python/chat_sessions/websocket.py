"""The WebSocket API's side of the service: API Gateway WebSocket events in, frames out.

The handlers (``functions/ws_connect.py``, ``ws_disconnect.py``, ``ws_subscribe.py``) are thin:
they read the connection id and the caller from the event here, call
:mod:`chat_sessions.services.subscriptions`, and answer with a frame built here. The caller is
the ``userId`` the ``$connect`` authorizer put in its context (``functions/ws_authorize.py``
deployed, the local gateway locally), which API Gateway passes to every route of the
connection: never anything the client sends in a frame.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat_sessions import keys
from chat_sessions.errors import ServiceError, Unauthorized


class BadFrame(Exception):
    """A client frame that is not a request this API knows."""


class SubscribeRequest(BaseModel):
    """``{"action": "subscribe", "sessionId", "chatId"}``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    action: Literal["subscribe"]
    session_id: str = Field(alias="sessionId", min_length=1, max_length=64)
    chat_id: str = Field(alias="chatId", min_length=1, max_length=64)


def connection_id(event: dict[str, Any]) -> str:
    value = (event.get("requestContext") or {}).get("connectionId")
    if not keys.is_valid_connection_id(value):
        raise BadFrame("The event has no connection id.")
    return str(value)


def user_id(event: dict[str, Any]) -> str:
    """The authorizer's ``userId`` (API Gateway passes a Lambda authorizer's context to every route)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    user = authorizer.get("userId")
    if not isinstance(user, str) or not user:
        raise Unauthorized("The connection has no authorized user.")
    return user


def subscribe_request(event: dict[str, Any]) -> SubscribeRequest:
    try:
        body = json.loads(event.get("body") or "")
    except ValueError as exc:
        raise BadFrame("A frame must be a JSON object.") from exc
    try:
        return SubscribeRequest.model_validate(body)
    except ValidationError as exc:
        raise BadFrame('Expected {"action": "subscribe", "sessionId": ..., "chatId": ...}.') from exc


def reply(frame: dict[str, Any]) -> dict[str, Any]:
    """A route's answer: API Gateway sends ``body`` back to the client (the route's
    ``$default`` route response)."""
    return {"statusCode": 200, "body": json.dumps(frame)}


def error_frame(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def service_error_frame(exc: ServiceError) -> dict[str, Any]:
    return error_frame(exc.code, exc.message)
