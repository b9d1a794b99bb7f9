"""The Lambda Invoke API, locally: ``POST /2015-03-31/functions/{name}/invocations`` on the
gateway's port, so code that hands work to another function with boto3
``lambda.invoke(..., InvocationType="Event")`` runs unchanged (the functions' boto3 finds it
through ``AWS_ENDPOINT_URL_LAMBDA``, which the local stack sets).

``X-Amz-Invocation-Type: Event`` answers ``202`` at once and runs the invocation in that
function's own workers (``local_stack.workers``: its concurrency, its timeout, a timed-out
invocation's worker killed), as Lambda's asynchronous invocation does; without it
(``RequestResponse``) it answers ``200`` with the handler's result. ``{name}`` is the function's
logical id in template.yaml (what ``!Ref`` gives locally), or an ARN ending in it. Lambda retries
a failed asynchronous invocation; locally it is logged and not retried (the template sets
``MaximumRetryAttempts: 0`` for the generating function anyway). Local only, on 127.0.0.1: no
SigV4 check.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from local_stack import template as cfn

PATH = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")


class LocalLambda:
    """Serves the Invoke API for the template's functions through ``run(function, event)``."""

    def __init__(
        self,
        template: dict[str, Any],
        run: Callable[[str, str, str, dict[str, Any]], Any],
        log: TextIO | None = None,
    ) -> None:
        self._functions = {
            name: res["Properties"]["Handler"].rsplit(".", 1) for name, res in cfn.functions(template).items()
        }
        self._run = run
        self._log = log or sys.stderr
        self.running: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def serve(self, request: Any) -> Any:
        """The gateway's hook: an answer for an Invoke request, None for anything else."""
        from local_stack.gateway import HttpResponse, error_response

        found = PATH.fullmatch(urlsplit(request.target).path)
        if found is None or request.method != "POST":
            return None
        name = unquote(found.group(1)).split(":function:")[-1].split(":")[0]
        if name not in self._functions:
            return error_response(404, "ResourceNotFoundException", f"Function not found: {name}")
        try:
            event = json.loads(request.body or b"{}")
        except ValueError:
            return error_response(400, "InvalidRequestContentException", "Could not parse request body into json")
        module, handler = self._functions[name]
        kind = next((v for k, v in request.headers if k.lower() == "x-amz-invocation-type"), "RequestResponse")
        if kind == "Event":
            thread = threading.Thread(
                target=self._background, args=(name, module, handler, event), name=f"invoke-{name}", daemon=True
            )
            with self._lock:
                self.running.add(thread)
            thread.start()
            return HttpResponse(202, [("Content-Type", "application/json")], b"")
        try:
            result = self._run(name, module, handler, event)
        except Exception as exc:
            return HttpResponse(
                200,
                [("Content-Type", "application/json"), ("X-Amz-Function-Error", "Unhandled")],
                json.dumps({"errorMessage": str(exc)[:2000], "errorType": type(exc).__name__}).encode(),
            )
        return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(result).encode())

    def _background(self, name: str, module: str, handler: str, event: dict[str, Any]) -> None:
        try:
            self._run(name, module, handler, event)
        except Exception:
            print(f"{name} (asynchronous invocation) failed:\n{traceback.format_exc().rstrip()}", file=self._log)
        finally:
            with self._lock:
                self.running.discard(threading.current_thread())


def pool_runner(pool: Any, functions: dict[str, Any]) -> Callable[[str, str, str, dict[str, Any]], Any]:
    """Run an invocation in the worker pool, with the function's timeout and memory
    (``functions``: the gateway's ``FunctionConfig`` by logical id)."""

    def run(name: str, module: str, handler: str, event: dict[str, Any]) -> Any:
        config = functions[name]
        return pool.invoke(module, handler, name, config.timeout_s, event, config.memory_mb)

    return run
