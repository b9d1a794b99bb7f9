"""A small terminal client for the API: ``python -m local_stack.chat_client --user alice``.

It exists so the service can be tried as a person would use it (``make chat``), through the
public HTTP API only: it makes a token for the user, opens a session (or joins ``--session``)
and sends each typed line to the session's active chat. Slash commands manage chats; ``/help``
lists them. It reads stdin line by line, so it works piped as well as interactively.

Replies are shown as they are generated: each message is sent with ``Prefer: respond-async``
(the API answers at once, the reply generating on its own) and the reply is followed with long
polls (``GET .../messages/{id}?wait=10&after=<characters shown>``), its new text printed as it
comes. Ctrl-C stops following, not the reply: it goes on without any client, and ``/history``
(or joining the session again with ``--session``) shows it, finished.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from local_stack.token import make_token

HELP = """\
commands:
  /new NAME            create a chat (it becomes the active one)
  /chats               list the session's chats (* marks the active one)
  /switch ID|NUMBER    make a chat active (a number from /chats, or a chat id)
  /history             the active chat's messages (a reply still generating is followed)
  /fork SEQ [NAME]     fork the active chat after message SEQ (the fork becomes active)
  /edit SEQ TEXT       replace your message SEQ with TEXT: a fork before it, TEXT sent there
  /sessions            your sessions
  /help                this text
  /quit                leave (so does end of input)
anything else is sent to the active chat"""


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.code = str(error.get("code", status))
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


class Client:
    def __init__(self, url: str, token: str, timeout: float = 60) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **params: Any
    ) -> Any:
        response = self.http.request(method, path, json=body, params=params or None, headers=headers)
        data = response.json() if response.content else None
        if response.status_code >= 400:
            raise ApiError(response.status_code, data)
        return data

    def all_pages(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", path, **params)
            items.extend(page["items"])
            cursor = page["nextCursor"]
            if not cursor:
                return items


class ChatSession:
    """The REPL's state: one session and the commands on it."""

    def __init__(self, client: Client, session_id: str, out: Any = sys.stdout) -> None:
        self.client = client
        self.session_id = session_id
        self.out = out

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def chats(self) -> list[dict[str, Any]]:
        return self.client.all_pages(f"/sessions/{self.session_id}/chats")

    def active_chat(self) -> dict[str, Any] | None:
        return next((chat for chat in self.chats() if chat["active"]), None)

    def new_chat(self, name: str) -> None:
        chat = self.client.call("POST", f"/sessions/{self.session_id}/chats", {"name": name})
        self.say(f"chat {chat['name']!r} created ({chat['chatId']}); it is now active")

    def list_chats(self) -> None:
        chats = self.chats()
        if not chats:
            self.say("no chats yet: type a message or /new NAME")
        for number, chat in enumerate(chats, 1):
            mark = "*" if chat["active"] else " "
            self.say(f"{mark} {number}. {chat['name']} ({chat['chatId']}, {chat['messageCount']} messages)")

    def switch(self, which: str) -> None:
        chats = self.chats()
        chat_id = chats[int(which) - 1]["chatId"] if which.isdigit() and 0 < int(which) <= len(chats) else which
        chat = self.client.call("POST", f"/sessions/{self.session_id}/chats/{chat_id}/activate")
        self.say(f"active chat: {chat['name']} ({chat['chatId']})")

    def history(self) -> None:
        chat = self.active_chat()
        if chat is None:
            self.say("no active chat")
            return
        for message in self.client.all_pages(f"/sessions/{self.session_id}/chats/{chat['chatId']}/messages"):
            if message["status"] == "generating":
                self.out.write(f"{message['seq']:>4} {message['role']}: ")
                self.follow(chat["chatId"], message)
                continue
            note = "" if message["status"] == "complete" else f" [{message['status']}]"
            self.say(f"{message['seq']:>4} {message['role']}: {message['content']}{note}")

    def follow(self, chat_id: str, message: dict[str, Any]) -> None:
        """Print a generating reply's text as it grows (long polls), until it ends; Ctrl-C stops
        following (the reply goes on)."""
        path = f"/sessions/{self.session_id}/chats/{chat_id}/messages/{message['messageId']}"
        shown = 0
        try:
            while True:
                self.out.write(message["content"][shown:])
                self.out.flush()
                shown = len(message["content"])
                if message["status"] != "generating":
                    break
                message = self.client.call("GET", path, wait=10, after=shown)
        except KeyboardInterrupt:
            self.say(" [still generating: /history shows it]")
            return
        note = "" if message["status"] == "complete" else f" [{message['status']}]"
        self.say(note)

    def message_at(self, chat_id: str, seq: int) -> dict[str, Any] | None:
        """The message at ``seq`` of a chat's history, found by listing it (the API names a
        message by its id; a person names it by the seq ``/history`` shows)."""
        for message in self.client.all_pages(f"/sessions/{self.session_id}/chats/{chat_id}/messages"):
            if message["seq"] == seq:
                return message
        return None

    def fork(self, argument: str) -> None:
        seq, _, name = argument.partition(" ")
        chat = self.active_chat()
        if chat is None or not seq.isdigit():
            self.say("usage: /fork SEQ [NAME], in a session with an active chat")
            return
        body: dict[str, Any] = {"uptoSeq": int(seq)}
        if name.strip():
            body["name"] = name.strip()
        fork = self.client.call("POST", f"/sessions/{self.session_id}/chats/{chat['chatId']}/fork", body)
        self.say(f"chat {fork['name']!r} ({fork['chatId']}) forked after message {seq}; it is now active")

    def edit(self, argument: str) -> None:
        seq, _, text = argument.partition(" ")
        chat = self.active_chat()
        if chat is None or not seq.isdigit() or not text.strip():
            self.say("usage: /edit SEQ TEXT, in a session with an active chat")
            return
        message = self.message_at(chat["chatId"], int(seq))
        if message is None:
            self.say(f"the active chat has no message {seq}")
            return
        path = f"/sessions/{self.session_id}/chats/{chat['chatId']}/messages/{message['messageId']}/edit"
        edited = self.client.call("POST", path, {"content": text.strip()})
        fork = edited["chat"]
        self.say(f"chat {fork['name']!r} ({fork['chatId']}) forked with your edit; it is now active")
        self.say(f"assistant: {edited['assistantMessage']['content']}")

    def list_sessions(self) -> None:
        for session in self.client.all_pages("/sessions"):
            mark = "*" if session["sessionId"] == self.session_id else " "
            self.say(
                f"{mark} {session['name']} ({session['sessionId']}, {session['status']}, {session['chatCount']} chats)"
            )

    def send(self, text: str) -> None:
        path, prefer = f"/sessions/{self.session_id}/messages", {"Prefer": "respond-async"}
        try:
            exchange = self.client.call("POST", path, {"content": text}, headers=prefer)
        except ApiError as exc:
            if exc.code != "no_active_chat":
                raise
            self.new_chat("Chat 1")
            exchange = self.client.call("POST", path, {"content": text}, headers=prefer)
        reply = exchange["assistantMessage"]
        self.out.write("assistant: ")
        self.follow(reply["chatId"], reply)

    def run_line(self, line: str) -> bool:
        """Handle one input line; False when the user asked to quit."""
        command, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if not command:
            return True
        if command in ("/quit", "/exit"):
            return False
        try:
            if command == "/help":
                self.say(HELP)
            elif command == "/new" and argument:
                self.new_chat(argument)
            elif command == "/chats":
                self.list_chats()
            elif command == "/switch" and argument:
                self.switch(argument)
            elif command == "/history":
                self.history()
            elif command == "/fork" and argument:
                self.fork(argument)
            elif command == "/edit" and argument:
                self.edit(argument)
            elif command == "/sessions":
                self.list_sessions()
            elif command.startswith("/"):
                self.say(f"unknown or incomplete command {command!r}; /help lists them")
            else:
                self.send(line.strip())
        except ApiError as exc:
            self.say(f"error: {exc}")
        except httpx.HTTPError as exc:
            self.say(f"error: cannot reach the API ({exc})")
        return True


def open_session(client: Client, user: str, session_id: str | None) -> dict[str, Any]:
    """The named session, else a new one; at the active-session limit, the newest active one."""
    if session_id:
        return dict(client.call("GET", f"/sessions/{session_id}"))
    try:
        return dict(client.call("POST", "/sessions", {"name": f"terminal ({user})"}))
    except ApiError as exc:
        newest = next((s for s in client.all_pages("/sessions") if s["status"] == "active"), None)
        if exc.code != "session_limit_reached" or newest is None:
            raise
        print(f"({exc}; joining your newest active session)", flush=True)
        return dict(newest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Chat with the API from a terminal.")
    parser.add_argument("--user", default="alice", help="who you are (the token's sub)")
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT') or 3000}", help="the API")
    parser.add_argument("--session", help="join this session instead of creating one")
    args = parser.parse_args(argv)
    client = Client(args.url, make_token(args.user))
    interactive = sys.stdin.isatty()
    try:
        session = open_session(client, args.user, args.session)
    except (ApiError, httpx.HTTPError) as exc:
        sys.exit(f"cannot open a session at {args.url}: {exc}")
    chat = ChatSession(client, session["sessionId"])
    chat.say(f"session {session['name']!r} ({session['sessionId']}) as {args.user}; /help for commands")
    while True:
        try:
            line = input("> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            break
        if not interactive and line.strip():
            chat.say(f"> {line.strip()}")
        if not chat.run_line(line):
            break
    chat.say("bye")


if __name__ == "__main__":
    main()
