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

Only third-party code, and nothing read from the environment: the service's own modules read
the environment when imported, and each worker receives its environment after the fork. The
clients made here to fill the loader's cache are given their region, endpoint and keys and are
thrown away; the workers' clients resolve their own from the worker's environment.
"""

import contextlib
import gc
import importlib
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

gc.collect()
gc.freeze()
