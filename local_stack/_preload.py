"""Imported once by the workers' fork server (``local_stack.workers``): the heavy third-party
libraries every handler needs, botocore's service descriptions, then ``gc.freeze()``.

Why: a forked worker shares the fork server's memory only until it writes to a page, and what a
worker imports or loads itself is its own. Measured per worker after its handler's cold start
(``Private_Dirty``, the send function): 33 MB with only the top-level packages imported here, 19 MB
with the modules those packages import lazily on first use (``openai``'s HTTP stack, Powertools'
validation middleware) and the DynamoDB, EventBridge, Lambda and API Gateway service
descriptions botocore parses from JSON when a client is created (about 9 MB of Python objects,
cached by the session's loader). The stack runs up to ``LOCAL_MAX_WORKERS`` of them.

Why the freeze: the cyclic garbage collector writes to every object it visits. Frozen objects
are never visited, so the pages holding the libraries stay shared between all workers instead of
being copied into each.

Then the service's own modules that read nothing from the environment when imported
(``SERVICE_MODULES``: the models, keys, the stores and most services; not ``observability``,
whose Logger, Tracer and Metrics read the function's settings, nor ``api``, ``llm`` and what
imports them): a worker's cold start imports the rest, 21 to 33 ms of CPU instead of 55 to 96.
Each worker receives its own environment after the fork, and nothing here reads it: settings,
clients and the table are made on first use (``tests/test_preload.py`` checks that importing
this module leaves them unmade and ``observability`` unimported). The clients made here to fill
botocore's loader cache are given their region, endpoint and keys and are thrown away; the
workers' clients resolve their own from the worker's environment. A change to the code reaches
the workers when the stack restarts.
"""

import contextlib
import gc
import importlib
import sys
from typing import Any

import aws_lambda_powertools
import aws_lambda_powertools.event_handler
import aws_lambda_powertools.logging
import aws_lambda_powertools.metrics
import aws_lambda_powertools.tracing
import aws_lambda_powertools.utilities.idempotency  # noqa: F401
import boto3
import botocore.client
import botocore.session  # noqa: F401
import httpx  # noqa: F401
import openai  # noqa: F401
import pydantic  # noqa: F401

from local_stack.template import layer_dirs

# Imported on first use by the packages above (so by every worker, after the fork). Names that
# another version of a package no longer has are skipped: the preload only saves memory.
LAZY = (
    "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
    "aws_lambda_powertools.event_handler.openapi.dependant",
    "aws_lambda_powertools.event_handler.openapi.encoders",
    "aws_lambda_powertools.event_handler.openapi.params",
    "aws_lambda_powertools.logging.correlation_paths",
    "anyio.abc",
    "anyio.streams.tls",
    "h11",
    "httpcore",
    "httpcore2",
    "truststore",
    "pydantic.alias_generators",
    "pydantic.deprecated.config",
    "aws_xray_sdk.core",  # Powertools' Tracer imports it (an optional dependency)
)
# The services the handlers call: botocore parses each one's description when the first client
# is made, and keeps it in the session's loader, which the workers' default session is.
SERVICES = ("dynamodb", "events", "lambda", "apigatewaymanagementapi")


# The service's modules that read no environment when imported (see the module's docstring).
SERVICE_MODULES = (
    "chat_sessions.config",
    "chat_sessions.context_window",
    "chat_sessions.cursors",
    "chat_sessions.errors",
    "chat_sessions.events",
    "chat_sessions.items",
    "chat_sessions.keys",
    "chat_sessions.models",
    "chat_sessions.push",
    "chat_sessions.usage",
    "chat_sessions.views",
    "chat_sessions.store",
    "chat_sessions.store.branches",
    "chat_sessions.store.chats",
    "chat_sessions.store.connections",
    "chat_sessions.store.erasure",
    "chat_sessions.store.markers",
    "chat_sessions.store.messages",
    "chat_sessions.store.outcomes",
    "chat_sessions.store.replies",
    "chat_sessions.store.sessions",
    "chat_sessions.services.branches",
    "chat_sessions.services.chats",
    "chat_sessions.services.cleanup",
    "chat_sessions.services.exchanges",
    "chat_sessions.services.history",
    "chat_sessions.services.messages",
    "chat_sessions.services.request_keys",
    "chat_sessions.services.retry",
    "chat_sessions.services.sessions",
    "chat_sessions.services.subscriptions",
)


def _load_service_descriptions() -> None:
    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    offline: dict[str, Any] = {
        "region_name": "us-east-1",
        "endpoint_url": "http://127.0.0.1:9",
        "aws_access_key_id": "preload",
        "aws_secret_access_key": "preload",
    }
    session.resource("dynamodb", **offline)  # its resource description too
    for service in SERVICES:
        session.client(service, **offline)  # type: ignore[call-overload]  # a str, not one Literal


for _name in LAZY:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)
_load_service_descriptions()
for _path in map(str, layer_dirs()):  # where the workers import the layer from, too
    if _path not in sys.path:
        sys.path.append(_path)


def import_service_modules(names: tuple[str, ...]) -> bool:
    """Import ``names``; False, with none of the service's modules left imported, when one fails
    (code being edited): each worker then imports the service itself and reports the error as
    its cold start's, as it did before the preload."""
    try:
        for name in names:
            importlib.import_module(name)
    except Exception:
        for loaded in [m for m in sys.modules if m == "chat_sessions" or m.startswith("chat_sessions.")]:
            del sys.modules[loaded]
        return False
    return True


import_service_modules(SERVICE_MODULES)

gc.collect()
gc.freeze()
