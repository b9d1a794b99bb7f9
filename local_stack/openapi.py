"""The OpenAPI document, generated from the handlers' own routes and models.

Each function module declares its route on a Powertools ``Router``; this module includes every
router named by ``template.yaml`` into one resolver (the same ``build_app`` the handlers use)
and asks Powertools for the schema, so the document cannot describe an API other than the one
deployed. ``python -m local_stack.openapi > openapi.json`` regenerates the committed copy; the
local stack serves it at ``/openapi.json`` and a test fails when the committed copy is stale.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tomllib
from typing import Any

from local_stack.template import ROOT, Route, layer_dirs, routes

TITLE = "chat-sessions"
DESCRIPTION = (
    "Many sessions per user, many LLM chats per session, exactly one active chat per session. "
    "Every request carries `Authorization: Bearer <JWT>`; the caller is the token's `sub` claim. "
    'Errors are `{"error": {"code", "message", "details"?}}`.'
)
_POWERTOOLS_PARAM = re.compile(r"<(\w+)>")


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def add_import_paths(found: list[Route] | None = None) -> list[str]:
    """Put the layers and every function's code directory on ``sys.path`` (as Lambda does
    with ``/opt/python`` and ``/var/task``); returns the paths in import order."""
    found = routes() if found is None else found
    paths: list[str] = []
    for directory in [*layer_dirs(), *(route.code_dir for route in found)]:
        if str(directory) not in paths:
            paths.append(str(directory))
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    return paths


def handler_modules(found: list[Route] | None = None) -> list[str]:
    """Every function module behind a route, in template order, each once."""
    found = routes() if found is None else found
    return list(dict.fromkeys(route.module for route in found))


def document() -> dict[str, Any]:
    """The OpenAPI document as a dict, paths in the template's ``{param}`` style."""
    return dict(json.loads(document_json()))


def document_json() -> str:
    """The OpenAPI document as Powertools renders it (stable: same code, same text)."""
    found = routes()
    add_import_paths(found)
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    from chat_sessions.api import build_app

    app = build_app(*(importlib.import_module(module).router for module in handler_modules(found)))
    text = app.get_openapi_json_schema(
        title=TITLE,
        version=version(),
        description=DESCRIPTION,
        security_schemes={
            "bearerAuth": HTTPBearer(bearerFormat="JWT", description="A JWT; its `sub` claim is the caller's user id.")
        },
        security=[{"bearerAuth": []}],
    )
    # Powertools writes path parameters in OpenAPI's ``{name}`` style already; should a version
    # ever emit its own ``<name>`` style, convert the path keys so they read as template.yaml's.
    doc = json.loads(text)
    if any(_POWERTOOLS_PARAM.search(path) for path in doc.get("paths", {})):
        doc["paths"] = {_POWERTOOLS_PARAM.sub(r"{\1}", path): item for path, item in doc["paths"].items()}
    _drop_default_validation_responses(doc)
    _state_what_is_enforced(doc)
    return json.dumps(doc, indent=2, ensure_ascii=False)


_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _state_what_is_enforced(doc: dict[str, Any]) -> None:
    """What Powertools cannot know from the signatures, stated from the code that enforces it,
    for every route (new ones included):

    - path ids (``...Id``) have the server's id form (``ids.is_valid_id``); another answers 404;
    - a ``cursor`` has the shape ``cursors.decode`` checks before its signature;
    - a query or header parameter is never ``null`` (HTTP has no null: absent is absent);
    - a ``204`` has no body;
    - a write may meet contention that outlasts its retries (``409 conflict``), and a POST
      with ``Idempotency-Key`` may answer ``409`` (the first request still runs) or ``422``
      (the key was used with another request);
    - deployed, API Gateway answers some requests itself, before any function runs, with its own
      body ``{"message": ...}``: a token its JWT authorizer refuses (401), an unrouted request
      (404), a body over its 10 MB (413), throttling (429), a function that failed or timed out
      (500, 503). Those statuses document both bodies.
    """
    from chat_sessions import api, cursors, ids
    from chat_sessions.models import ErrorBody

    error = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}}
    either = {"anyOf": [{"$ref": f"#/components/schemas/{ErrorBody.__name__}"}, {"$ref": _GATEWAY_REF}]}
    doc.setdefault("components", {}).setdefault("schemas", {})[_GATEWAY_NAME] = _GATEWAY_SCHEMA
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") in ("query", "header", "path"):
                    _not_nullable(schema)
                if parameter.get("in") == "path" and parameter["name"].endswith("Id"):
                    schema["pattern"] = ids.PATTERN
                    parameter["description"] = "A server-issued id (ULID); any other value answers 404."
                if parameter.get("in") == "query" and parameter["name"] == "cursor":
                    schema["pattern"] = cursors.PATTERN
                    parameter["description"] = (
                        "The `nextCursor` of the previous page, unchanged; a cursor this listing did not "
                        "issue to this caller answers 400 validation_error."
                    )
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status == "204":
                    response.pop("content", None)
            extra = []
            if method != "get":
                extra.append(409)
            keyed = any(p.get("name", "").lower() == "idempotency-key" for p in operation.get("parameters", []))
            if keyed:
                extra += [409, 422]
            for status in extra:
                described = {"description": api.error_description(status), "content": json.loads(json.dumps(error))}
                responses.setdefault(str(status), described)
            for status in _GATEWAY_STATUSES:
                content = responses.get(status, {}).get("content", {}).get("application/json")
                if content is not None:
                    content["schema"] = json.loads(json.dumps(either))
            operation["responses"] = dict(sorted(responses.items()))


_GATEWAY_STATUSES = ("401", "404", "413", "429", "500", "503")
_GATEWAY_NAME = "GatewayMessage"
_GATEWAY_REF = f"#/components/schemas/{_GATEWAY_NAME}"
_GATEWAY_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"],
    "title": _GATEWAY_NAME,
    "description": "What API Gateway itself answers (deployed only), e.g. "
    '`{"message": "Unauthorized"}` or `{"message": "Not Found"}`; the local gateway always '
    "answers the contract's error body.",
}


def _not_nullable(schema: dict[str, Any]) -> None:
    """``anyOf: [X, {"type": "null"}]`` becomes ``X`` (keeping the title, default, description)."""
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return
    rest = [v for v in variants if v != {"type": "null"}]
    if len(rest) == 1 and len(rest) < len(variants):
        del schema["anyOf"]
        schema.update(rest[0])
        if schema.get("default", "") is None:
            del schema["default"]


def _drop_default_validation_responses(doc: dict[str, Any]) -> None:
    """Powertools documents a 422 ``HTTPValidationError`` on every validated route, but this API
    answers validation errors with 400 and its own error body (``api.responses`` documents it);
    only an ``Idempotency-Key`` reuse is a 422 here. Remove the default so the document says
    what the API does."""
    default = "#/components/schemas/HTTPValidationError"
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            response = operation.get("responses", {}).get("422", {})
            if response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref") == default:
                del operation["responses"]["422"]
    if default not in json.dumps(doc.get("paths", {})):
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)


def main() -> None:
    sys.stdout.write(document_json() + "\n")


if __name__ == "__main__":
    main()
