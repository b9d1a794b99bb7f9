#!/usr/bin/env python3
"""The chat-sessions story, as a client: one session, two chats, exactly one active.

    python examples/story.py --url http://127.0.0.1:3000 --token "$(make -s token USER=alice)"
    python examples/story.py --url "$API" --token "$TOKEN"      # a deployed stack (README, Deploy to AWS)

(``API_URL`` and ``TOKEN`` in the environment work too.) It creates a session; its first chat
becomes the active chat; a message sent to the session goes to it; a second chat takes over;
switching back makes the first active again, and the conversation continues with its history.
Then it deletes the session (``--keep`` leaves it). Only the standard library: copy it anywhere.
Exits 1 with the server's answer when a step does not go as the API promises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any


class StoryError(Exception):
    pass


class Api:
    """A few lines of HTTP: JSON in, JSON out, the bearer token on every request."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310 - http(s) URL given by the user
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        if status != expect:
            raise StoryError(f"{method} {path}: expected {expect}, got {status}: {text}")
        return json.loads(text) if text else None


def story(api: Api, keep: bool = False, say: Any = print) -> dict[str, Any]:
    """Run the story; returns what it saw (for the test that keeps this example working)."""
    session = api.call("POST", "/sessions", {"name": "Story"}, expect=201)
    sid = session["sessionId"]
    say(f"session {sid} created ({session['status']})")
    try:
        debug = api.call("POST", f"/sessions/{sid}/chats", {"name": "Debug Session"}, expect=201)
        say(f"chat {debug['chatId']} 'Debug Session' created, active: {debug['active']}")

        first = api.call("POST", f"/sessions/{sid}/messages", {"content": "Why does my Lambda time out?"}, expect=201)
        say(f"  you:   {first['userMessage']['content']}")
        say(f"  model: {first['assistantMessage']['content']}")

        feature = api.call("POST", f"/sessions/{sid}/chats", {"name": "Feature Development"}, expect=201)
        say(f"chat {feature['chatId']} 'Feature Development' created and took over, active: {feature['active']}")
        if api.call("GET", f"/sessions/{sid}")["activeChatId"] != feature["chatId"]:
            raise StoryError("the new chat did not become the active chat")

        api.call("POST", f"/sessions/{sid}/chats/{debug['chatId']}/activate")
        say(f"switched back to 'Debug Session' ({debug['chatId']})")

        second = api.call("POST", f"/sessions/{sid}/messages", {"content": "It calls a slow API."}, expect=201)
        say(f"  you:   {second['userMessage']['content']}")
        say(f"  model: {second['assistantMessage']['content']}")
        if second["userMessage"]["chatId"] != debug["chatId"]:
            raise StoryError("the message did not go to the chat switched back to")

        messages = api.call("GET", f"/sessions/{sid}/chats/{debug['chatId']}/messages")["items"]
        say(f"'Debug Session' holds {len(messages)} messages; 'Feature Development' none")
        return {"session": sid, "chats": [debug["chatId"], feature["chatId"]], "messages": messages}
    finally:
        if not keep:
            api.call("DELETE", f"/sessions/{sid}", expect=204)
            say(f"session {sid} deleted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The chat-sessions usage story against any base URL.")
    parser.add_argument("--url", default=os.environ.get("API_URL"), help="base URL (default: $API_URL)")
    parser.add_argument("--token", default=os.environ.get("TOKEN"), help="bearer token (default: $TOKEN)")
    parser.add_argument("--keep", action="store_true", help="keep the session instead of deleting it")
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        parser.error("give --url and --token (or API_URL and TOKEN)")
    try:
        story(Api(args.url, args.token), keep=args.keep)
    except (StoryError, urllib.error.URLError) as exc:
        print(f"story failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
