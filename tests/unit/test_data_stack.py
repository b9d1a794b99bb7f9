"""A test's hot loop costs no page faults at any depth (``tests/data_stack.py`` says why)."""

from __future__ import annotations

import resource

from tests.data_stack import in_roomy_chunk

CALLS = 1_000
DEPTHS = range(0, 300)


def _callee() -> int:
    """A frame bigger than ``_down``'s, so that sweeping the depth one frame at a time cannot
    step over the place where it no longer fits in its chunk."""
    a = b = c = d = e = f = g = h = i = j = k = m = n = o = p = q = r = s = t = u = 1
    return a + b + c + d + e + f + g + h + i + j + k + m + n + o + p + q + r + s + t + u


def _down(depth: int) -> int:
    if depth:
        return _down(depth - 1)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(CALLS):
        _callee()
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def faults_by_depth() -> dict[int, int]:
    return {depth: _down(depth) for depth in DEPTHS}


def test_a_loop_at_any_depth_takes_no_page_fault_per_call() -> None:
    faults = in_roomy_chunk(faults_by_depth)
    worst = max(faults, key=faults.__getitem__)
    # One fault now and then (the loop's memory, a new page of the stack) is not a fault per call.
    assert faults[worst] < CALLS // 10, f"{faults[worst]} page faults for {CALLS} calls at depth {worst}"
