"""The committed ``openapi.json`` is what the code generates, and it describes template.yaml's routes.

``make openapi`` regenerates it; this fails when someone changes a handler or a model and forgets.
"""

from __future__ import annotations

import json
from typing import Any

from local_stack.openapi import document_json
from local_stack.template import ROOT, routes

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _operations(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, item in paths.items() for method in item if method in METHODS}


def test_committed_openapi_json_is_current() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == document_json() + "\n", "openapi.json is stale: run `make openapi` and commit it"


def test_openapi_and_template_describe_the_same_routes() -> None:
    document = json.loads((ROOT / "openapi.json").read_text())
    from_template = {(route.method, route.path) for route in routes()}
    assert len(from_template) == len(routes()), "a route is declared twice in template.yaml"
    assert _operations(document) == from_template


def test_every_operation_is_secured_and_documents_its_errors() -> None:
    document = json.loads((ROOT / "openapi.json").read_text())
    assert document["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                assert {"401", "404"} <= set(operation["responses"]), (method, path)


def _each_operation(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_document_states_the_constraints_the_code_enforces() -> None:
    """Issue 16: ids, cursors and keys have the form the service checks; no parameter is null."""
    from chat_sessions import cursors, idempotency, ids

    document = json.loads((ROOT / "openapi.json").read_text())
    for method, path, operation in _each_operation(document):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            assert "anyOf" not in schema and schema.get("type") != "null", (method, path, parameter)
            if parameter["in"] == "path" and parameter["name"].endswith("Id"):
                assert schema["pattern"] == ids.PATTERN, (method, path, parameter)
            if parameter["name"] == "cursor":
                assert schema["pattern"] == cursors.PATTERN, (method, path, parameter)
            if parameter["name"].lower() == "idempotency-key":
                assert schema["pattern"] == idempotency.KEY_PATTERN, (method, path, parameter)


def test_patch_fields_that_refuse_null_are_not_nullable() -> None:
    schemas = json.loads((ROOT / "openapi.json").read_text())["components"]["schemas"]
    for model, fields in {"UpdateSessionRequest": ("name", "metadata"), "UpdateChatRequest": ("name", "model")}.items():
        for field in fields:
            schema = schemas[model]["properties"][field]
            assert "anyOf" not in schema and "default" not in schema, (model, field, schema)
    assert {"type": "null"} in schemas["UpdateChatRequest"]["properties"]["systemPrompt"]["anyOf"]


def test_every_operation_documents_every_status_it_may_answer() -> None:
    """204 has no body; every operation the statuses any request may meet; writes 409; keyed POSTs
    409 and 422; and every error code of the service appears in a description."""
    from chat_sessions import api

    document = json.loads((ROOT / "openapi.json").read_text())
    text = json.dumps(document)
    for method, path, operation in _each_operation(document):
        responses = operation["responses"]
        assert {str(status) for status in api.BASE_ERRORS} <= set(responses), (method, path)
        if "204" in responses:
            assert "content" not in responses["204"], (method, path)
        if method != "get":
            assert "409" in responses, (method, path)
        if any(p["name"].lower() == "idempotency-key" for p in operation.get("parameters", [])):
            assert {"409", "422"} <= set(responses), (method, path)
    for status in (400, 401, 404, 409, 413, 422, 429, 500, 502, 503, 504):
        for code in api.error_codes(status):
            assert f"`{code}`" in text, code
