"""Fixtures shared by the unit modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lambda_service import LambdaService, lambda_service
from tests.support import reset_caches

GENERATOR = "GenerateReplyFunction"
"""The generating function's name, as the handlers read it from ``GENERATE_REPLY_FUNCTION``."""


@pytest.fixture
def lam(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaService]:
    """A stand-in Lambda service the handlers hand asynchronous generations to (it records each
    event; a test runs the generating function with it)."""
    with lambda_service() as service:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", service.url)
        monkeypatch.setenv("GENERATE_REPLY_FUNCTION", GENERATOR)
        reset_caches()
        yield service
