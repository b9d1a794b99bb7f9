"""Imported once by the workers' fork server (``local_stack.workers``): the heavy third-party
libraries every handler needs, then ``gc.freeze()``.

Why the freeze: a forked worker shares the fork server's memory only until it writes to a page,
and the cyclic garbage collector writes to every object it visits. Frozen objects are never
visited, so the pages holding the libraries stay shared between all workers instead of being
copied into each (the workers' memory is most of the stack's).

Only third-party modules: the service's own modules read the environment when imported, and each
worker receives its environment after the fork.
"""

import contextlib
import gc

import aws_lambda_powertools
import aws_lambda_powertools.event_handler
import aws_lambda_powertools.logging
import aws_lambda_powertools.metrics
import aws_lambda_powertools.tracing
import aws_lambda_powertools.utilities.idempotency  # noqa: F401
import boto3  # noqa: F401
import botocore.client
import botocore.session  # noqa: F401
import httpx  # noqa: F401
import openai  # noqa: F401
import pydantic  # noqa: F401

with contextlib.suppress(ImportError):  # Powertools' Tracer imports it (an optional dependency)
    import aws_xray_sdk.core  # noqa: F401

gc.collect()
gc.freeze()
