"""A handler that answers with its environment: what a local worker of a function starts with
(tests/test_function_environment.py)."""

from __future__ import annotations

import os
from typing import Any


def handler(event: Any, context: Any) -> dict[str, str]:
    return dict(os.environ)
