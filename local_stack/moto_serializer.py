"""moto's DynamoDB answers without walking every attribute value through its generic serializer.

moto (5.x) builds each JSON answer by walking the operation's output shape: every member of every
structure is looked up through its attribute picker, with its aliases. A DynamoDB item is a map
of ``AttributeValue`` structures of ten members (``S``, ``N``, ... ``BOOL``), of which one is set,
so each attribute of each item costs ten lookups. Measured under ``cProfile`` on the model-reply
property test (``tests/unit/test_properties.py``, 110 examples, 1,049 DynamoDB requests): 29 of
its 50 s were moto's serializer, about 28 ms a request, most of it in those lookups.

moto keeps items in the wire format already (a dict of one type key per value, checked below),
so :func:`install` gives the JSON serializer a direct path for an ``AttributeValue`` that is such
a dict: each type converted exactly as the generic path converts it (strings and numbers with
``str``, binaries base64-encoded by the serializer's own ``_base64``, sets and lists member by
member, maps value by value, ``NULL`` and ``BOOL`` as they are). Anything else, or any key it
does not know, goes the generic way. ``tests/unit/test_moto_serializer.py`` checks both paths
give the same JSON for every attribute type.

Used by the tests' moto and the embedded moto server, as :mod:`local_stack.moto_transactions` is.
"""

from __future__ import annotations

import functools
from enum import Enum
from typing import Any

from moto.core.serialize import BaseJSONSerializer

_STRINGS = ("S", "N")
_STRING_SETS = ("SS", "NS")
_AS_IS = ("NULL", "BOOL")


class _Unusual(Exception):
    """A value the direct path does not take: the generic serializer does."""


def install() -> None:
    """Patch moto's JSON serializer (idempotent; process-wide)."""
    generic = BaseJSONSerializer._serialize_type_structure
    if getattr(generic, "_attribute_values_direct", False):
        return

    @functools.wraps(generic)
    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and type(value) is dict:
            try:
                wire = _attribute_value(self, value)
            except _Unusual:
                pass
            else:
                self._default_serialize(serialized, wire, shape, key)
                return
        generic(self, serialized, value, shape, key)

    serialize_structure._attribute_values_direct = True  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def _string(value: Any) -> str:
    """What the generic path makes of a string shape (``_serialize_type_string``)."""
    if type(value) is str:
        return value
    if value is None or isinstance(value, (dict, list, Enum)):
        raise _Unusual
    return str(value)


def _attribute_value(serializer: Any, value: Any) -> dict[str, Any]:
    if type(value) is not dict or not value:
        raise _Unusual
    out: dict[str, Any] = {}
    for kind, member in value.items():
        if member is None:  # the generic path leaves an unset member out
            continue
        if kind in _STRINGS:
            out[kind] = _string(member)
        elif kind == "B":
            out[kind] = serializer._base64(member)
        elif kind == "BS":
            out[kind] = [serializer._base64(m) for m in _members(member)]
        elif kind in _STRING_SETS:
            out[kind] = [_string(m) for m in _members(member)]
        elif kind == "M":
            if type(member) is not dict:
                raise _Unusual
            out[kind] = {k: _attribute_value(serializer, v) for k, v in member.items() if v is not None}
        elif kind == "L":
            out[kind] = [_attribute_value(serializer, v) for v in _members(member)]
        elif kind in _AS_IS:
            out[kind] = member
        else:
            raise _Unusual
    return out


def _members(value: Any) -> list[Any]:
    if type(value) is not list or any(m is None for m in value):
        raise _Unusual
    return value
