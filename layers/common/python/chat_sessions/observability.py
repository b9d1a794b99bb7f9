"""Logger, Tracer and Metrics, created once and shared by every handler and service."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="chat-sessions")
tracer = Tracer(service="chat-sessions")
metrics = Metrics(namespace="ChatSessions", service="chat-sessions")
