"""HTTP glue shared by every handler: identity, errors, idempotency, the Lambda entry point.

A handler module declares one route on a Powertools ``Router`` and calls one service function;
everything else about being an HTTP endpoint of this service happens here, once.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.logging import correlation_paths
from botocore.exceptions import ClientError
from pydantic import BaseModel

from chat_sessions import idempotency
from chat_sessions.config import get_settings
from chat_sessions.errors import PayloadTooLarge, ServiceError, Unauthorized
from chat_sessions.models import ErrorBody
from chat_sessions.observability import logger, metrics, tracer

_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
}

_ERROR_DESCRIPTIONS = {
    400: "validation_error",
    401: "unauthorized",
    404: "not_found",
    409: "conflict (chat_not_active, session_paused, no_active_chat, session_limit_reached, nothing_to_regenerate)",
    413: "payload_too_large",
    422: "idempotency_key_reused",
    429: "rate_limited (the model, or DynamoDB throttling; see Retry-After)",
    502: "upstream_error",
    504: "upstream_timeout",
}


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=idempotency.KEY_PATTERN,
        description="Makes a retry of this POST safe: a repeat with the same key and body within 24 hours "
        "returns the first response and does nothing again; the same key with another body answers 422.",
    ),
]
"""The ``Idempotency-Key`` header, declared on every POST route so the OpenAPI document shows it;
``respond`` reads and enforces it."""


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=_error_body(code, message, details),
        headers=headers,
    )


def _error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The contract's error body: ``{"error": {"code", "message", "details"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def responses(success: int, model: type[BaseModel] | None, *errors: int) -> dict[int, Any]:
    """OpenAPI ``responses`` for a route: its success body and the error bodies it may send."""
    out: dict[int, Any] = {}
    if model is None:
        out[success] = {"description": "No content"}
    else:
        out[success] = {"description": HTTPStatus(success).phrase, "content": {"application/json": {"model": model}}}
    for status in (400, 401, 404, 429, *errors):
        out[status] = {
            "description": _ERROR_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {"application/json": {"model": ErrorBody}},
        }
    return out


def user_id(router: Router) -> str:
    """The caller, from the JWT authorizer's claims and nowhere else."""
    claims = (
        router.current_event.raw_event.get("requestContext", {}).get("authorizer", {}).get("jwt", {}).get("claims", {})
    )
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Missing or invalid token.")
    return sub


def _dump(result: BaseModel | None) -> Any:
    return None if result is None else result.model_dump(mode="json", by_alias=True)


def _response(status: int, body: Any) -> Response[Any]:
    if body is None:
        return Response(status_code=status)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def respond(router: Router, status: int, produce: Callable[[], BaseModel | None]) -> Response[Any]:
    """Run the operation and shape its response; a POST with ``Idempotency-Key`` runs at most
    once per user and key, and its repeats get the first response back."""
    event = router.current_event
    key = idempotency.checked_key(event.headers.get(idempotency.HEADER))
    if event.http_method != "POST" or key is None:
        return _response(status, _dump(produce()))
    try:
        body: Any = event.json_body
    except ValueError:
        body = event.decoded_body
    stored = idempotency.run_once(
        user_id(router),
        operation=event.raw_event.get("routeKey") or event.http_method,
        key=key,
        request={"method": event.http_method, "path": event.path, "body": body},
        produce=lambda: {"status": status, "body": _dump(produce())},
    )
    return _response(int(stored["status"]), stored["body"])


def _register_error_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(ServiceError)
    def service_error(exc: ServiceError) -> Response[Any]:
        if exc.status >= 500:
            logger.warning("request failed", extra={"code": exc.code, "reason": exc.message})
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[Any]:
        details = [
            {"loc": list(e.get("loc", ())), "type": e.get("type"), "message": e.get("msg")} for e in exc.errors()
        ]
        return error_response(400, "validation_error", "The request is not valid.", details)

    @app.exception_handler(UnicodeDecodeError)
    def undecodable_body(exc: UnicodeDecodeError) -> Response[Any]:
        return error_response(400, "validation_error", "The body must be UTF-8 encoded JSON.")

    @app.exception_handler(RequestUnsupportedContentType)
    def unsupported_content(exc: RequestUnsupportedContentType) -> Response[Any]:
        return error_response(400, "validation_error", "The body must be JSON (application/json).")

    @app.not_found
    def no_route(exc: NotFoundError) -> Response[Any]:
        return error_response(404, "not_found", "No such resource.")

    @app.exception_handler(ClientError)
    def dynamodb_error(exc: ClientError) -> Response[Any]:
        # Throttling survives the client's own retries only under sustained overload: tell the
        # caller to back off rather than report a bug.
        if exc.response.get("Error", {}).get("Code") in _THROTTLING:
            logger.warning("throttled by DynamoDB", extra={"code": exc.response["Error"]["Code"]})
            return error_response(
                429, "rate_limited", "Too many requests right now; retry shortly.", headers={"Retry-After": "1"}
            )
        return _internal_error()

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[Any]:
        return _internal_error()


def _internal_error() -> Response[Any]:
    logger.exception("unexpected error")
    return error_response(500, "internal_error", "Something went wrong on our side.")


def build_app(*routers: Router) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    _register_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(base64.b64decode(body, validate=False))
    return len(body.encode())


def lambda_handler_for(router: Router) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point for one route: logging with the request id as correlation id,
    tracing, metrics, a body-size guard, and Powertools routing and validation."""
    app = build_app(router)
    max_body = get_settings().max_body_bytes

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        idempotency.config.register_lambda_context(context)
        if _body_size(event) > max_body:
            exc = PayloadTooLarge(f"The body is larger than {max_body} bytes.")
            result = {
                "statusCode": exc.status,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps(_error_body(exc.code, exc.message)),
            }
        else:
            result = app.resolve(event, context)
        logger.info(
            "request",
            extra={
                "route": event.get("routeKey"),
                "status": result.get("statusCode"),
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return result

    return handler
