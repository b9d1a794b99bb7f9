"""moto's JSON answers as ``local_stack.moto_serializer`` makes them: the same JSON as moto's
generic serializer, for every attribute type, by the direct path (and the unusual by the generic)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.core.serialize import BaseJSONSerializer, JSONSerializer
from moto.core.utils import get_service_model

from local_stack import moto_serializer

ITEM: dict[str, Any] = {
    "PK": {"S": "USER#u"},
    "empty": {"S": ""},
    "odd": {"S": '\x00\u202e\U0001f600 "quoted" \\'},
    "n": {"N": "-1.50e3"},
    "b": {"B": b"\x00\xff"},
    "bs": {"BS": [b"x", b"\x00"]},
    "ss": {"SS": ["p", "q"]},
    "ns": {"NS": ["1", "2.5"]},
    "m": {"M": {"x": {"L": [{"S": "1"}, {"NULL": True}, {"BOOL": False}]}, "e": {"M": {}}, "l": {"L": []}}},
    "t": {"BOOL": True},
}


def serialize(operation: str, result: dict[str, Any], direct: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(BaseJSONSerializer, "_serialize_type_structure", GENERIC)
        if direct:
            moto_serializer.install()
        model = get_service_model("dynamodb").operation_model(operation)
        return json.loads(JSONSerializer(model).serialize(result)["body"])


GENERIC = BaseJSONSerializer._serialize_type_structure
while getattr(GENERIC, "_attribute_values_direct", False):  # installed by an earlier test's world
    GENERIC = GENERIC.__wrapped__  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("operation", "result"),
    [
        ("GetItem", {"Item": ITEM}),
        ("Query", {"Items": [ITEM, {"PK": {"S": "x"}}], "Count": 2, "LastEvaluatedKey": {"PK": {"S": "x"}}}),
        ("UpdateItem", {"Attributes": ITEM}),
        ("TransactGetItems", {"Responses": [{"Item": ITEM}, {}]}),
    ],
    ids=["get", "query", "update", "transact-get"],
)
def test_the_direct_path_answers_what_the_generic_path_answers(
    operation: str, result: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    generic = serialize(operation, result, direct=False, monkeypatch=monkeypatch)
    assert generic["Items" if operation == "Query" else next(iter(result))]  # something was serialized
    assert serialize(operation, result, direct=True, monkeypatch=monkeypatch) == generic


def test_an_unusual_value_takes_the_generic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the direct path does not know (an unknown type key, a None in a list) is the
    generic serializer's to answer, whatever it makes of it."""
    odd = {"Item": {"a": {"X": "?"}, "b": {"L": [None]}, "c": {"S": "ok"}}}
    assert serialize("GetItem", odd, direct=True, monkeypatch=monkeypatch) == serialize(
        "GetItem", odd, direct=False, monkeypatch=monkeypatch
    )


def test_install_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(BaseJSONSerializer, "_serialize_type_structure", GENERIC)
        moto_serializer.install()
        once = BaseJSONSerializer._serialize_type_structure
        moto_serializer.install()
        assert BaseJSONSerializer._serialize_type_structure is once
        assert once.__wrapped__ is GENERIC  # type: ignore[attr-defined]
