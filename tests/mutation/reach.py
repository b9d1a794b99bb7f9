"""Which store functions each test enters, so each mutant's run starts with the tests that can
catch it.

A mutant changes a condition literal inside one function of the store; a test that never enters
that function runs exactly as it does unmutated and cannot fail. The mutation check therefore
runs the tests that enter it first (with ``-x``, the first catch ends the run). The static guess
it had (tests calling the store function by name) missed every test that reaches the store
through a service, which then ran after the rest of the module: 20-30 s instead of 4 s for a
third of the mutants.

The functions a test enters are recorded once, on a copy of the unmutated tree whose store
modules are rewritten by :func:`instrument` to call :func:`hit` on entering each function. That
copy only orders the work: the verdicts come from the unmutated and mutated trees, which are
never instrumented. Anything not recorded (a test added to another module, a recording that
failed) only costs time: every test still runs, in the order given.

Loaded as a pytest plugin (``-p tests.mutation.reach``) in the recording run, with
``MUTATION_REACH_FILE`` naming the JSON file it writes: ``{test node id: [[module, function]]}``.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REACH_FILE = "MUTATION_REACH_FILE"
_current: str | None = None
_reached: dict[str, set[tuple[str, str]]] = {}


def hit(module: str, function: str) -> None:
    """Called on entering each function of an instrumented store module."""
    if _current is not None:
        _reached.setdefault(_current, set()).add((module, function))


def instrument(source: bytes, module: str) -> str:
    """``source`` with a call of :func:`hit` as the first statement of every function (at any
    depth: a condition may sit in a nested function)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            call = ast.parse(f"__import__('tests.mutation.reach', fromlist=['hit']).hit({module!r}, {node.name!r})")
            node.body.insert(0, call.body[0])
    return ast.unparse(ast.fix_missing_locations(tree))


def read(path: Path) -> dict[str, set[tuple[str, str]]]:
    """What a recording run wrote (nothing when it wrote nothing)."""
    if not path.exists():
        return {}
    return {test: {(m, f) for m, f in names} for test, names in json.loads(path.read_text()).items()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _current
    _current = item.nodeid
    try:
        yield
    finally:
        _current = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(REACH_FILE)
    if target:
        Path(target).write_text(json.dumps({test: sorted(names) for test, names in _reached.items()}))
