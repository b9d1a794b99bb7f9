"""Logger, Tracer and Metrics, created once and shared by every handler and service.

The tracer is Powertools' (X-Ray subsegments for the handler and every AWS call) only when
tracing is on: ``POWERTOOLS_TRACE_DISABLED`` unset or false, which the template sets from its
``XRaySubsegments`` parameter. Off, nothing imports the X-Ray SDK: importing it costs about as
much as importing boto3, because it builds a botocore X-Ray client for centralized sampling
that Lambda never uses (aws/aws-xray-sdk-python#311, #273), so it would nearly double a
handler's cold start (README, "Cold start"). Lambda's own active tracing (the function's
segment, with its initialization) needs no SDK and stays on either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from aws_lambda_powertools import Logger, Metrics

Handler = TypeVar("Handler", bound=Callable[..., Any])


class HandlerTracer(Protocol):
    """What the handlers use of Powertools' ``Tracer``."""

    def capture_lambda_handler(self, lambda_handler: Handler) -> Handler: ...


class Untraced:
    """A ``HandlerTracer`` that does nothing (tracing off)."""

    def capture_lambda_handler(self, lambda_handler: Handler) -> Handler:
        return lambda_handler


def tracing_enabled(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return env.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in ("1", "true")


def _tracer() -> HandlerTracer:
    if not tracing_enabled():
        return Untraced()
    from aws_lambda_powertools import Tracer

    traced: Any = Tracer(service="chat-sessions")  # its decorator's overloads, not our Protocol's
    return traced  # type: ignore[no-any-return]


logger = Logger(service="chat-sessions")
tracer = _tracer()
metrics = Metrics(namespace="ChatSessions", service="chat-sessions")
