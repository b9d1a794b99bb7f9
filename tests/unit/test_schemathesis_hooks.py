"""The Schemathesis hook drops exactly the refusals by design the README lists, nothing else."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from tests.schemathesis_hooks import filter_failure, refused_by_design, unrouted


def error(code: str, *details: tuple[list[str], str]) -> bytes:
    body: dict[str, Any] = {"code": code, "message": "m"}
    if details:
        body["details"] = [{"loc": loc, "type": kind} for loc, kind in details]
    return json.dumps({"error": body}).encode()


BY_DESIGN = {
    "cursor": (400, error("validation_error", (["query", "cursor"], "invalid_cursor"))),
    "fork-past-last-seq": (400, error("validation_error", (["body", "uptoSeq"], "out_of_range"))),
    "edit-not-user": (400, error("validation_error", (["path", "messageId"], "not_a_user_message"))),
    "key-reused": (422, error("idempotency_key_reused")),
}
NOT_BY_DESIGN = {
    "plain-400": (400, error("validation_error")),
    "cursor-and-more": (
        400,
        error("validation_error", (["query", "cursor"], "invalid_cursor"), (["query", "limit"], "less_than")),
    ),
    "cursor-type-elsewhere": (400, error("validation_error", (["body", "name"], "invalid_cursor"))),
    "cursor-as-422": (422, error("validation_error", (["query", "cursor"], "invalid_cursor"))),
    "other-422": (422, error("unprocessable")),
    "500": (500, error("internal_error")),
    "not-json": (400, b"<html>"),
    "no-error-key": (400, b'{"message": "Bad Request"}'),
}


@pytest.mark.parametrize("name", sorted(BY_DESIGN))
def test_refusals_by_design_are_dropped(name: str) -> None:
    status, body = BY_DESIGN[name]
    assert refused_by_design(status, body)
    failure = SimpleNamespace(code="ST202")
    assert filter_failure(None, failure, None, SimpleNamespace(status_code=status, content=body)) is False


@pytest.mark.parametrize("name", sorted(NOT_BY_DESIGN))
def test_other_refusals_are_kept(name: str) -> None:
    status, body = NOT_BY_DESIGN[name]
    assert not refused_by_design(status, body)
    failure = SimpleNamespace(code="ST202")
    assert filter_failure(None, failure, None, SimpleNamespace(status_code=status, content=body)) is True


def test_only_positive_data_acceptance_failures_are_filtered_by_refusal() -> None:
    status, body = BY_DESIGN["cursor"]
    for code in ("ST101", "ST103", "ST201", "ST301"):
        failure = SimpleNamespace(code=code)
        assert filter_failure(None, failure, None, SimpleNamespace(status_code=status, content=body)) is True


@pytest.mark.parametrize(
    ("status", "body", "dropped"),
    [
        (404, error("not_found"), True),
        (404, b'{"message": "Not Found"}', True),
        (404, error("unauthorized"), False),
        (501, b"<html>Unsupported method</html>", False),
        (200, error("not_found"), False),
    ],
    ids=["local-404", "api-gateway-404", "other-code", "html-501", "200"],
)
def test_an_unrouted_method_is_dropped_only_as_a_404(status: int, body: bytes, dropped: bool) -> None:
    assert unrouted(status, body) is dropped
    failure = SimpleNamespace(code="ST204")
    assert filter_failure(None, failure, None, SimpleNamespace(status_code=status, content=body)) is (not dropped)


def test_the_auth_file_names_the_two_peers_of_the_configuration(tmp_path: Any) -> None:
    import tomllib

    from tests.schemathesis_hooks import PEERS, write_auth_file
    from tests.servers import ROOT

    path = tmp_path / "auth.json"
    write_auth_file(path, "t1", "t2")
    document = json.loads(path.read_text())
    assert [entry["name"] for entry in document["auth"]] == list(PEERS)
    assert [entry["fixedHeaders"] for entry in document["auth"]] == [
        [{"name": "Authorization", "value": "Bearer t1"}],
        [{"name": "Authorization", "value": "Bearer t2"}],
    ]
    config = tomllib.loads((ROOT / "tests" / "schemathesis.toml").read_text())
    assert config["auth"]["wfc"]["peers"] == list(PEERS)
