"""An embedded DynamoDB for the tests, and for the local stack when Java is missing (else it runs
DynamoDB Local, ``local_stack.dynamodb_local``): moto's server, requests serialized.

moto suits small tables only: its ``Query`` walks the whole table, so it slows down as the table
grows (README, "The local stack under load"; ``make bench-local`` measures both engines). Its
``TransactWriteItems`` copied every table it touches, once per item; ``local_stack.moto_transactions``
makes it copy only the items the transaction writes.

moto evaluates a condition and applies the write in two Python steps, so two threads can both
pass the same condition; real DynamoDB never lets that happen. Serializing requests restores
DynamoDB's per-request atomicity, which is what the concurrency tests rely on: clients still
race (many threads, many connections), the table just answers one request at a time.

Run alone: ``python -m local_stack.dynamodb --port 0`` prints ``ready http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server


class _Serialized:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


def patch_moto() -> None:
    """moto's DynamoDB as every moto of this project runs it (the tests' in-process one and this
    server): transactions copy only the items they write (``local_stack.moto_transactions``) and
    attribute values go straight into answers (``local_stack.moto_serializer``). Idempotent."""
    from local_stack import moto_serializer, moto_transactions

    moto_transactions.install()
    moto_serializer.install()


def make_dynamodb_server(host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded HTTP server speaking the DynamoDB API (not yet serving)."""
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    patch_moto()
    app = _Serialized(DomainDispatcherApplication(create_backend_app))
    return make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)


def start_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[BaseWSGIServer, str]:
    server = make_dynamodb_server(host, port)
    threading.Thread(target=server.serve_forever, name="dynamodb", daemon=True).start()
    return server, f"http://{host}:{server.server_port}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = make_dynamodb_server(args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready http://{args.host}:{server.server_port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
