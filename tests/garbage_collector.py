"""The cyclic garbage collector in the test processes: frozen after collection, run less often.

A pytest worker holds half a million objects that live as long as it does (pytest, moto, boto3's
service models, Hypothesis, Schemathesis, the modules under test), and every full collection
walked all of them again: measured with ``gc.callbacks`` over a whole ``make test``, the three
workers spent 29 of their 232 CPU-s in the collector, 23 of them in 86 full collections of
about a quarter of a second each. Most of what a test allocates dies young by reference count;
the collector is only for cycles. So once the tests are collected, what exists is frozen (no
collection walks it again) and a collection waits for 50,000 new objects instead of 700.
``tests/unit`` in one process: 157 s to 126 s (107 to 81 CPU-s), peak RSS 381 MB.

Only the test processes: the handlers under test, the local stacks the tests start and Lambda
keep their own settings (``chat_sessions.coldstart``, ``local_stack._preload``).

Imported by ``tests/conftest.py``, which makes the hook its own.
"""

from __future__ import annotations

import gc

import pytest

THRESHOLDS = (50_000, 20, 100)
"""Objects allocated (less those freed) before a young collection; young collections before a
middle one; middle ones before a full one (which also waits until the objects that survived
since the last full one are a quarter of those it walks)."""


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
