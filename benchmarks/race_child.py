"""One racer of the concurrency benchmark: a fresh process, like one Lambda container.

Handlers cannot race inside one process: Powertools keeps the current event on a class
attribute (``BaseRouter.current_event``), shared by every thread. Lambda never runs two
requests in one container at once, so the race runs one process per send, as Lambda would.

The process imports the handler and builds its clients (the cold start), prints ``ready``,
waits for a line on stdin (the starting gun, sent to all racers at once), sends one message
through ``send_message.lambda_handler`` and prints the status and body as one JSON line.
Configuration comes from the environment the benchmark sets (``DYNAMODB_ENDPOINT``...).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--user", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--chat", required=True)
    parser.add_argument("--content", required=True)
    args = parser.parse_args(argv)

    sys.path[:0] = [str(ROOT / "layers" / "common" / "python"), str(ROOT / "functions"), str(ROOT)]
    from chat_sessions import llm, store
    from tests.support import invoke

    importlib.import_module("send_message")
    store.get_store()
    llm.get_chat_model()
    print("ready", flush=True)
    sys.stdin.readline()
    result = invoke(
        "send_message", user=args.user, session=args.session, chat=args.chat, body={"content": args.content}
    )
    print(json.dumps({"status": result.status, "body": result.body}), flush=True)


if __name__ == "__main__":
    main()
