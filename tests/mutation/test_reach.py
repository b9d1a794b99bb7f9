"""The mutation check's recording of which store functions a test enters: every function of an
instrumented module (nested ones too) reports itself when entered, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation import reach

STORE = Path(__file__).resolve().parents[2] / "layers/common/python/chat_sessions/store"

SOURCE = b'''
def outer(x):
    """doc"""
    def inner(y):
        return y + 1
    if x:
        return inner(x)
    return 0


class Store:
    def method(self):
        return outer(1)
'''


def test_every_function_reports_itself_when_entered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reach, "_current", "t::one")
    monkeypatch.setattr(reach, "_reached", {})
    namespace: dict[str, object] = {}
    exec(compile(reach.instrument(SOURCE, "mod"), "mod.py", "exec"), namespace)
    assert namespace["Store"]().method() == 2  # type: ignore[operator]
    assert reach._reached == {"t::one": {("mod", "method"), ("mod", "outer"), ("mod", "inner")}}


def test_outside_a_test_nothing_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reach, "_current", None)
    monkeypatch.setattr(reach, "_reached", {})
    namespace: dict[str, object] = {}
    exec(compile(reach.instrument(SOURCE, "mod"), "mod.py", "exec"), namespace)
    assert namespace["outer"](0) == 0  # type: ignore[operator]
    assert reach._reached == {}


def test_every_store_module_compiles_instrumented() -> None:
    for path in sorted(STORE.glob("*.py")):
        compile(reach.instrument(path.read_bytes(), path.stem), str(path), "exec")
