"""HTTP glue shared by every handler: identity, errors, idempotency, the Lambda entry point.

A handler module declares one route on a Powertools ``Router`` and calls one service function;
everything else about being an HTTP endpoint of this service happens here, once.
"""

from __future__ import annotations

import base64
import hashlib
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
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from chat_sessions import coldstart, idempotency, invocation
from chat_sessions.config import get_settings
from chat_sessions.errors import Conflict, PayloadTooLarge, ServiceError, Unauthorized, ValidationFailed
from chat_sessions.models import EditResult, ErrorBody, Exchange
from chat_sessions.observability import logger, metrics, tracer
from chat_sessions.services.exchanges import exchange_ref, read_exchange
from chat_sessions.services.request_keys import RequestKey
from chat_sessions.store import Collision, ConditionFailed, get_store
from chat_sessions.store.outcomes import classify

_ERROR_DESCRIPTIONS = {
    400: "malformed JSON, wrong types, out-of-range values, unknown fields, a body that is not JSON, a cursor "
    "the server did not issue for this listing, a malformed Idempotency-Key (`details` says where)",
    401: "no token, or one that is not valid",
    404: "no such resource for this caller (another user's resource answers the same), or an id that is not "
    "of the server's form",
    409: "`conflict`: a concurrent change outlasted the retries, or a request with this Idempotency-Key is "
    "still running (retry); any other code: the resource's state refuses the request",
    413: "the body is over the limit (512 KiB)",
    422: "this Idempotency-Key was used with another request to this operation",
    429: "throttled (the model, DynamoDB or the function's concurrency: retry after `Retry-After` seconds), "
    "or a budget is spent",
    500: "a bug (no input should cause it)",
    502: "the model failed; the user message stays stored, unanswered",
    503: "DynamoDB could not answer; retry after `Retry-After` seconds",
    504: "the model did not answer in time; the user message stays stored, unanswered",
}
"""What each status means here; :func:`error_description` puts the codes in front."""
BASE_ERRORS = (400, 401, 404, 413, 429, 500, 503)
"""What any operation may answer: a malformed request (any route refuses a broken body or an
oversized one before routing on), no valid token, no such resource, throttling, a bug, and
DynamoDB unavailable."""


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=idempotency.KEY_PATTERN,
        description="Makes a retry of this POST safe. Keys are scoped to the caller and the operation: a "
        "repeat with the same key, path and body within 24 hours returns the first response (status and body) "
        "and does nothing again; the same key with another path or body answers 422 idempotency_key_reused; a "
        "repeat while the first request still runs answers 409 conflict. A request that failed leaves no "
        "record, so it can be retried with the same key. 1..128 printable ASCII characters, not starting or "
        "ending with a space.",
    ),
]
"""The ``Idempotency-Key`` header, declared on every POST route so the OpenAPI document shows it;
``respond`` reads and enforces it."""


Prefer = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="respond-async: answer 202 at once, with the user message stored and the reply in status "
        "generating; the reply is generated on its own (read it with GET .../messages/{messageId}?wait=&after=, "
        "or subscribe over the WebSocket API). Without it the answer waits for the whole reply (201).",
    ),
]
"""The ``Prefer`` header of the routes that answer with a reply (RFC 7240's ``respond-async``)."""


def prefers_async(router: Router) -> bool:
    """Whether the request asked ``Prefer: respond-async`` (any case, among other preferences)."""
    headers = router.current_event.headers or {}
    values = [str(v) for k, v in headers.items() if k.lower() == "prefer"]
    preferences = (part.split(";")[0].split("=")[0].strip().lower() for v in values for part in v.split(","))
    return "respond-async" in preferences


def exchange_responses(*errors: int, model: type[BaseModel] = Exchange) -> dict[int, Any]:
    """A send's, regenerate's or edit's responses: ``201`` (the whole reply) or, asked
    ``Prefer: respond-async``, ``202`` (the reply generating), both ``model``."""
    out = responses(201, model, *errors)
    out[202] = {
        "description": "Accepted (Prefer: respond-async): the reply is generating",
        "content": {"application/json": {"model": model}},
    }
    return dict(sorted(out.items()))


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


def error_codes(status: int) -> list[str]:
    """Every code of ``errors`` answered with ``status`` (from the exception classes, so a new
    code is documented as soon as it exists). Only the classes of :mod:`chat_sessions.errors`
    count: a subclass elsewhere (the WebSocket's ``connection_closed``) is no HTTP answer, and
    would be documented or not depending on which modules happened to be imported."""
    found: set[str] = set()
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.status == status and cls.__module__ == ServiceError.__module__:
            found.add(cls.code)
    return sorted(found)


def error_description(status: int) -> str:
    """The codes this status carries, then what it means (the OpenAPI response description)."""
    codes = ", ".join(f"`{code}`" for code in error_codes(status))
    meaning = _ERROR_DESCRIPTIONS.get(status, HTTPStatus(status).phrase)
    return f"{codes}: {meaning}" if codes else meaning


def responses(success: int, model: type[BaseModel] | None, *errors: int) -> dict[int, Any]:
    """OpenAPI ``responses`` for a route: its success body and the error bodies it may send."""
    out: dict[int, Any] = {}
    if model is None:
        out[success] = {"description": "No content"}
    else:
        out[success] = {"description": HTTPStatus(success).phrase, "content": {"application/json": {"model": model}}}
    for status in sorted({*BASE_ERRORS, *errors}):
        out[status] = {
            "description": error_description(status),
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


def _request(router: Router) -> dict[str, Any]:
    """What an ``Idempotency-Key`` is bound to: the same key with another request is refused."""
    event = router.current_event
    try:
        body: Any = event.json_body
    except ValueError:
        body = event.decoded_body
    return {"method": event.http_method, "path": event.path, "body": body}


def _operation(router: Router) -> str:
    event = router.current_event
    return str(event.raw_event.get("routeKey") or event.http_method)


def request_key(router: Router) -> RequestKey | None:
    """The request's ``Idempotency-Key`` (hashed with its route) and the request's hash, for
    the marker that makes a repeat after a failure answer what the first attempt stored."""
    key = idempotency.checked_key(router.current_event.headers.get(idempotency.HEADER))
    if key is None:
        return None
    return RequestKey(
        key_hash=hashlib.sha256(f"{_operation(router)}\n{key}".encode()).hexdigest(),
        request_hash=hashlib.sha256(json.dumps(_request(router), sort_keys=True).encode()).hexdigest(),
    )


def respond(router: Router, status: int, produce: Callable[[], BaseModel | None]) -> Response[Any]:
    """Run the operation and shape its response; a POST with ``Idempotency-Key`` runs at most
    once per user and key, and its repeats get the first response back.

    The record of an exchange (a send, a regenerate, or an edit's, with the fork it made) holds
    where its two messages are, not their text: a 32,000-character message and a long reply
    would not fit DynamoDB's 400 KB item limit together. A repeat reads them back (one
    BatchGetItem)."""
    event = router.current_event
    if event.http_method != "POST":
        return _response(status, _dump(produce()))
    key = idempotency.checked_key(event.headers.get(idempotency.HEADER))
    if key is None:
        return _response(status, _dump(produce()))
    first: list[BaseModel | None] = []

    def record() -> dict[str, Any]:
        result = produce()
        first.append(result)
        if isinstance(result, Exchange):
            return {"status": status, "exchange": exchange_ref(result)}
        if isinstance(result, EditResult):  # the fork as it was answered, its exchange by reference
            exchange = Exchange(user_message=result.user_message, assistant_message=result.assistant_message)
            return {"status": status, "edit": {"chat": _dump(result.chat), "exchange": exchange_ref(exchange)}}
        return {"status": status, "body": _dump(result)}

    stored = idempotency.run_once(
        user_id(router), operation=_operation(router), key=key, request=_request(router), produce=record
    )
    if first:
        return _response(status, _dump(first[0]))
    if "edit" in stored:
        exchange = read_exchange(get_store(), user_id(router), stored["edit"]["exchange"])
        return _response(int(stored["status"]), {"chat": stored["edit"]["chat"], **_dump(exchange)})
    if "exchange" in stored:
        return _response(int(stored["status"]), _dump(read_exchange(get_store(), user_id(router), stored["exchange"])))
    return _response(int(stored["status"]), stored["body"])


def _register_error_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(ServiceError)
    def service_error(exc: ServiceError) -> Response[Any]:
        return _service_error(exc)

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[Any]:
        errors = exc.errors()
        details = [
            {"loc": [_printable(part) for part in e.get("loc", ())], "type": e.get("type"), "message": e.get("msg")}
            for e in errors[:MAX_ERROR_DETAILS]
        ]
        message = "The request is not valid."
        if len(errors) > MAX_ERROR_DETAILS:
            message += f" The first {MAX_ERROR_DETAILS} of {len(errors)} problems are listed."
        return error_response(400, "validation_error", message, details)

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
    @app.exception_handler(BotoCoreError)
    def dynamodb_error(exc: Exception) -> Response[Any]:
        # The store classifies its own calls; these come from elsewhere (Powertools Idempotency's
        # DynamoDB errors, which idempotency.run_once unwraps). Throttling and unavailability are
        # not bugs: tell the caller to back off. A collision outlasting retries is a conflict.
        outcome = classify(exc)
        if isinstance(outcome, ServiceError):
            return _service_error(outcome)
        if isinstance(outcome, Collision | ConditionFailed):
            return _service_error(Conflict("A concurrent request changed this resource; retry the request."))
        return _internal_error()

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[Any]:
        return _internal_error()


def _service_error(exc: ServiceError) -> Response[Any]:
    if exc.status >= 500:
        logger.warning("request failed", extra={"code": exc.code, "reason": exc.message})
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _internal_error() -> Response[Any]:
    logger.exception("unexpected error")
    return error_response(500, "internal_error", "Something went wrong on our side.")


MAX_ERROR_DETAILS = 20
"""A body of a few hundred KB can hold tens of thousands of wrong values (a metadata map of
30,000 integers); listing each would make a response of megabytes, so the first ones are
listed and the message says how many there were."""


def _printable(part: Any) -> Any:
    """A ``loc`` part echoes the client's own keys, which may hold lone surrogates: escape them
    so the error body is always valid Unicode."""
    if isinstance(part, str):
        return part.encode("utf-8", "backslashreplace").decode("utf-8")
    return part


MAX_JSON_DEPTH = 64
"""How deeply a request body may nest. No body of the contract nests more than a few levels; the
limit keeps a deep one from recursing through code that copies or hashes it (Powertools'
Idempotency deep-copies the request it binds a key to: 1,000 levels exceeded Python's recursion
limit there and answered 500)."""


def parse_json_body(text: str) -> Any:
    """``json.loads`` for request bodies, failing only with ``JSONDecodeError``.

    Valid JSON can still be unparseable for Python: nesting deeper than the interpreter's
    recursion limit raises ``RecursionError`` and an integer of more than 4,300 digits raises
    ``ValueError``. Powertools turns only ``JSONDecodeError`` into a validation error, so these
    are re-raised as one: a 400 like any other malformed body, instead of a 500. So is a body
    nested deeper than ``MAX_JSON_DEPTH``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "a number too large"
        raise json.JSONDecodeError(f"The JSON document has {reason} to be read", "", 0) from None
    if _nests_deeper(value, MAX_JSON_DEPTH):
        raise json.JSONDecodeError(f"The JSON document is nested more than {MAX_JSON_DEPTH} levels deep", "", 0)
    return value


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` has objects or arrays more than ``limit`` levels deep (no recursion)."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def build_app(*routers: Router) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=parse_json_body)
    _register_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(base64.b64decode(body, validate=False))
    # "surrogatepass": a body may carry lone surrogates (JSON escapes in the event decode to
    # them); it is measured here and refused by validation, not crashed on.
    return len(body.encode("utf-8", "surrogatepass"))


_PARSED_AS_BODY = ("application/x-www-form-urlencoded", "multipart/")


def _json_or_no_body(event: dict[str, Any]) -> bool:
    """Every body of this API is JSON. Powertools would also parse a form or a multipart body
    (and fails with a ``ValueError``, a 500, on a multipart type without a boundary), so any
    other declared type is refused before it runs: a body that is not declared JSON, or a form
    or multipart type even with no body. No ``Content-Type`` reads as JSON, as Powertools does."""
    headers = event.get("headers") or {}
    declared = next((str(v) for k, v in headers.items() if str(k).lower() == "content-type"), "")
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type in ("", "application/json"):
        return True
    return not (event.get("body") or media_type.startswith(_PARSED_AS_BODY))


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
        idempotency.register_lambda_context(context)
        refused: ServiceError | None = None
        if _body_size(event) > max_body:
            refused = PayloadTooLarge(f"The body is larger than {max_body} bytes.")
        elif not _json_or_no_body(event):
            refused = ValidationFailed(
                "The body must be JSON (Content-Type: application/json).",
                details=[{"loc": ["header", "Content-Type"], "type": "unsupported_content_type"}],
            )
        if refused is not None:
            result = {
                "statusCode": refused.status,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps(_error_body(refused.code, refused.message, refused.details)),
            }
        else:
            with invocation.running(context):
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

    coldstart.resume()  # the handler is built: the last of its cold start (chat_sessions.coldstart)
    return handler
