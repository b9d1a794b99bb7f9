"""``make invoke FN=<LogicalId> EVENT=events/<op>.json``: ``sam local invoke`` without Docker.

What ``sam local invoke`` does, in this Python: the function's handler (``Handler`` and
``CodeUri`` from template.yaml, the layers on ``sys.path`` as ``/opt/python``), its
``Environment`` from the template (``local_stack.template.function_environment``: parameters
at their defaults, the table the local one; a Secrets Manager secret or SSM parameter, which
nothing emulates here, left out so the code takes its local path), a Lambda context with the
function's timeout and memory, and the response printed as JSON on stdout.

DynamoDB is ``DYNAMODB_ENDPOINT`` when set (``make run``'s, DynamoDB Local, a moto server: the
table is created there if missing), else an embedded moto that lives as long as the command;
the model is ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` when set, else the local model. Variables
you export win over the template's, as ``--env-vars`` does for ``sam local invoke``; so do
``--env NAME=VALUE`` options. What was left out and why is printed on stderr with ``-v``.

``FN`` is a logical id (``CreateSessionFunction``) or a handler module (``create_session``);
``EVENT`` a file (``-`` reads stdin). The exit status is 0 when the handler returned, 1 when
it raised (the traceback on stderr, like Lambda's ``errorMessage``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_stack import template as cfn
from local_stack.workers import LambdaContext

LAMBDA_DEFAULT_TIMEOUT_S = 3.0
LAMBDA_DEFAULT_MEMORY_MB = 128


@dataclass(frozen=True)
class Function:
    logical_id: str
    module: str
    handler: str
    code_dir: Path
    timeout_s: float
    memory_mb: int


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # an intrinsic: Lambda's default stands in
        return default


def find_function(name: str, template: dict[str, Any] | None = None) -> Function:
    """The function by logical id or handler module name; SystemExit listing them if unknown."""
    template = template or cfn.load()
    defaults = template.get("Globals", {}).get("Function", {})
    found = cfn.functions(template)
    for logical_id, resource in found.items():
        props = resource["Properties"]
        module, handler = props["Handler"].rsplit(".", 1)
        if name in (logical_id, module):
            return Function(
                logical_id,
                module,
                handler,
                cfn.ROOT / props.get("CodeUri", defaults.get("CodeUri")),
                _number(props.get("Timeout", defaults.get("Timeout")), LAMBDA_DEFAULT_TIMEOUT_S),
                int(_number(props.get("MemorySize", defaults.get("MemorySize")), LAMBDA_DEFAULT_MEMORY_MB)),
            )
    raise SystemExit(f"no function {name!r} in template.yaml; one of: {', '.join(sorted(found))}")


def invoke(function: Function, event: Any, environment: dict[str, str]) -> Any:
    """Call the handler once, in this process, with exactly ``environment`` as ``os.environ``
    (a cold start: call it in a fresh process, or reset cached settings and clients first)."""
    os.environ.clear()
    os.environ.update(environment)
    for path in reversed([*map(str, cfn.layer_dirs()), str(function.code_dir)]):
        if path not in sys.path:
            sys.path.insert(0, path)
    handler = getattr(importlib.import_module(function.module), function.handler)
    context = LambdaContext(
        function_name=function.logical_id,
        memory_limit_in_mb=function.memory_mb,
        deadline=time.time() + function.timeout_s,
        aws_request_id=str(uuid.uuid4()),
    )
    return handler(event, context)


@contextlib.contextmanager
def local_backends() -> Iterator[None]:
    """DynamoDB (with the table) and a model, as ``make run`` prepares them; its progress lines
    go to stderr, so stdout holds only the response."""
    from local_stack.gateway import prepare_environment

    with contextlib.redirect_stdout(sys.stderr):
        resources = prepare_environment(os.environ)
    if not os.environ.get("AWS_ENDPOINT_URL_EVENTBRIDGE", "").strip():
        # The domain events' bus (local_stack.eventbridge), as make run serves it: what the
        # publisher puts there is printed on stderr after the response.
        from local_stack import eventbridge

        server, url, bus = eventbridge.start_in_thread(os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        os.environ["AWS_ENDPOINT_URL_EVENTBRIDGE"] = url
        resources.stops.append(server.shutdown)

        def show_events() -> None:
            for published in bus.events()["events"]:
                print(f"event {json.dumps(published)}", file=sys.stderr)

        resources.stops.append(show_events)
    try:
        yield
    finally:
        resources.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description="Invoke one function locally, without Docker.")
    parser.add_argument("function", help="logical id (CreateSessionFunction) or handler module (create_session)")
    parser.add_argument("event", help="the event file (events/<op>.json), or - for stdin")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="set a variable (wins)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the environment the template gave")
    args = parser.parse_args(argv)
    # Metrics are off locally; Powertools would warn on every invocation that publishes none.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    function = find_function(args.function)
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
        event = json.loads(text)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the event {args.event}: {exc}")
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser.error(f"--env takes NAME=VALUE, not {pair!r}")
        os.environ[name] = value
    # Local defaults first (credentials, region, table name, tracing and metrics off), so that
    # what the template gives each function applies under them and under what the user set.
    os.environ.setdefault("TABLE_NAME", cfn.LOCAL_TABLE)
    with local_backends():
        environment = cfn.environment_for(function.logical_id)
        if args.verbose:
            described = cfn.function_environment(function.logical_id)
            for name, value in sorted(described.variables.items()):
                shown = (
                    environment[name]
                    if environment[name] == value
                    else f"{environment[name]} (set here; template: {value})"
                )
                print(f"env {name}={shown}", file=sys.stderr)
            for name, why in sorted(described.left_out.items()):
                print(f"env {name} left out: {why}", file=sys.stderr)
        print(f"invoking {function.logical_id} ({function.module}.{function.handler})", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            result = invoke(function, event, environment)
        except Exception:
            traceback.print_exc()
            return 1
        elapsed_ms = (time.perf_counter() - started) * 1000
    print(json.dumps(result, indent=2, default=str))
    print(f"{function.logical_id} returned in {elapsed_ms:.0f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
