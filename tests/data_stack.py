"""Each test runs at the bottom of a roomy chunk of CPython's frame stack, so a hot loop in it
never straddles two chunks.

Why: CPython 3.11 and 3.12 keep a thread's Python frames in chunks of 16 KB. When a call needs
more room than the current chunk has left, a new chunk is mapped (``mmap``); when that call
returns, the chunk is unmapped again. A loop whose calls land just past a chunk's end maps and
unmaps 16 KB for every call, and takes a page fault each time (CPython gh-142183, fixed in 3.13
and 3.14 only). Where that happens depends on how deep the loop runs, so it comes and goes with
the stack above a test: under pytest-xdist (execnet's frames above pytest's), the cost tests'
paging through 10,000 moto items took 12 to 14 s instead of 1.5, with a million page faults,
and a whole ``make test`` took about three million such faults in its workers (``perf record
-e page-faults``: 44% of all the faults of the run, in ``_PyThreadState_BumpFramePointerSlow``).

How: a chunk is at least as big as the frame that needs it, rounded up to a power of two times
16 KB. So each test is run from a function whose frame is made large (its code object lists
``ROOM_LOCALS`` unused local variables: about 136 KB): that frame gets a chunk of 256 KB to itself,
and the 120 KB left in it hold the test's own calls, some 600 frames deep, before another chunk
is needed. It costs one mapping of 256 KB per test. ``tests/unit/test_data_stack.py`` counts the
page faults of a loop at every depth to prove it.

Imported by ``tests/conftest.py``, which makes the hook its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from _pytest import runner

ROOM_LOCALS = 17_000
"""Unused local variables of the roomy frame: 8 bytes each, 136 KB, so its chunk is 256 KB."""

T = TypeVar("T")


def in_roomy_chunk(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` with some 120 KB of the frame stack free below it (see the module): the
    frame of this function is the roomy one, its code given ``ROOM_LOCALS`` more locals below."""
    return call(*args)


_code = in_roomy_chunk.__code__
in_roomy_chunk.__code__ = _code.replace(
    co_varnames=_code.co_varnames + tuple(f"_room_{i}" for i in range(ROOM_LOCALS)),
    co_nlocals=_code.co_nlocals + ROOM_LOCALS,
)
del _code


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """pytest's own protocol (set-up, call, teardown, reports), from the roomy frame."""
    return bool(in_roomy_chunk(runner.pytest_runtest_protocol, item, nextitem))
