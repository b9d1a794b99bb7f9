"""Shared fixtures: environment, the moto table built from template.yaml, handler invocation."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "common" / "python"), str(ROOT / "functions"), str(ROOT)]

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "chat-sessions-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_DEV": "false",
        "OPENAI_API_KEY": "test-key",
    }
)
for name in ("DYNAMODB_ENDPOINT", "OPENAI_BASE_URL", "OPENAI_API_KEY_PARAMETER"):
    os.environ.pop(name, None)

from tests.support import reset_caches  # noqa: E402


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh moto table, created from the definition in template.yaml."""
    from moto import mock_aws

    from local_stack.template import ensure_table

    with mock_aws():
        reset_caches()
        import boto3

        ensure_table(boto3.client("dynamodb"), os.environ["TABLE_NAME"])
        yield os.environ["TABLE_NAME"]
    reset_caches()
