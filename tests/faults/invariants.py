"""The service's invariants, checked on what DynamoDB Local stored (read directly, not through the
injector and not through the API, so nothing the service believes can hide a broken item).

Checked per user the scenario created:

- exactly one chat ``active`` per session, and it is the session's ``activeChatId`` (or no active
  chat and no pointer);
- the user's active-session counter equals their sessions with status ``active``, and is within
  ``MAX_ACTIVE_SESSIONS``;
- ``chatCount`` and ``messageCount`` on sessions, ``messageCount`` and ``lastSeq`` on chats, equal
  the items stored;
- no session or chat is stored twice (the scenarios name each one differently and create it once);
- every chat's own messages have ``seq`` exactly 1..N, or, for a fork, from the seq after its
  shared history (``lineage``) on; no ``messageId`` is stored twice in one chat; no user message
  content is stored twice in one chat (the scenarios send each content once);
- nothing is orphaned (a chat without its session, a message without its chat), except the
  messages a deleted chat keeps for its forks (up to the ``keptUpTo`` its mark names), which no
  counter counts;
- every ``201`` (and ``202``: a reply answered ``generating``, its content stored later) the API
  answered is stored (sessions, chats, messages, with the ``seq`` answered), unless the scenario
  tried to delete it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from tests.faults.recorder import Call, Recorder

_deserializer = TypeDeserializer()


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the table, consistently read, as plain Python values."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend({k: _deserializer.deserialize(v) for k, v in item.items()} for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def user_pk(user: str) -> str:
    return "USER#" + user.replace("%", "%25").replace("#", "%23")


@dataclass
class UserData:
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    quota: dict[str, Any] | None = None
    chats: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    heads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    kept: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))


def user_data(items: list[dict[str, Any]], user: str) -> UserData:
    """The user's sessions, counter, chats (per session) and messages (per session partition)."""
    pk = user_pk(user)
    data = UserData()
    for item in items:
        item_pk, sk = str(item["PK"]), str(item["SK"])
        if item_pk == pk:
            if sk.startswith("SESSION#"):
                data.sessions[sk[len("SESSION#") :]] = item
            elif sk == "QUOTA":
                data.quota = item
        elif item_pk.startswith(pk + "#SESSION#"):
            session_id = item_pk[len(pk + "#SESSION#") :]
            if sk.startswith("CHAT#"):
                data.chats[session_id][sk[len("CHAT#") :]] = item
            elif sk.startswith("MSG#") and item.get("type") == "message":
                data.messages[session_id].append(item)
            elif sk.startswith("MSG#"):
                data.heads[session_id].add(sk[len("MSG#") :])
                if item.get("keptUpTo") is not None:  # a deleted chat's mark: forks share its messages
                    data.kept[session_id][sk.split("#")[1]] = int(item["keptUpTo"])
    return data


def _num(value: Any) -> int:
    return int(value) if value is not None else 0


NOT_COUNTED = {("user", "unanswered"), ("assistant", "generating"), ("assistant", "failed"), ("assistant", "cancelled")}


def counts(message: dict[str, Any]) -> bool:
    """Whether the counters (``messageCount``, usage) count a stored message."""
    return (message.get("role"), message.get("status")) not in NOT_COUNTED


def check_user(items: list[dict[str, Any]], user: str, max_active: int, recorder: Recorder) -> list[str]:
    """Every invariant for one user; returns the violations (each check counted)."""
    data = user_data(items, user)
    bad: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        recorder.checked(name)
        if not ok:
            bad.append(f"{name}: {detail}")

    active_sessions = [sid for sid, s in data.sessions.items() if s.get("status") == "active"]
    counter = _num((data.quota or {}).get("activeSessions"))
    check(
        "quota counter = active sessions",
        counter == len(active_sessions),
        f"{user}: counter {counter}, active sessions {len(active_sessions)}",
    )
    check("active sessions <= limit", len(active_sessions) <= max_active, f"{user}: {len(active_sessions)} active")

    # The scenarios give every session of a user, and every chat of a session, a name of its
    # own, and create each once (retries carry the same Idempotency-Key): two items with one name
    # are one create applied twice.
    names = Counter(str(s.get("name")) for s in data.sessions.values())
    check(
        "each session created once",
        all(n == 1 for n in names.values()),
        f"{user}: sessions stored more than once: { {k: n for k, n in names.items() if n > 1} }",
    )
    for session_id, chats_of in data.chats.items():
        chat_names = Counter(str(c.get("name")) for c in chats_of.values())
        check(
            "each chat created once",
            all(n == 1 for n in chat_names.values()),
            f"session {session_id}: chats stored more than once: { {k: n for k, n in chat_names.items() if n > 1} }",
        )
    all_ids: Counter[str] = Counter()
    for session_id in set(data.chats) | set(data.messages):
        check("no orphan chats or messages", session_id in data.sessions, f"{user}: partition of gone {session_id}")
    for session_id, session in data.sessions.items():
        chats = data.chats.get(session_id, {})
        messages = data.messages.get(session_id, [])
        active = sorted(cid for cid, c in chats.items() if c.get("active") is True)
        pointer = session.get("activeChatId")
        if pointer:
            check(
                "one active chat = activeChatId",
                active == [pointer],
                f"session {session_id}: activeChatId {pointer}, chats flagged active {active}",
            )
        else:
            check(
                "one active chat = activeChatId",
                active == [],
                f"session {session_id}: no activeChatId, chats flagged active {active}",
            )
        check(
            "session chatCount = chats",
            _num(session.get("chatCount")) == len(chats),
            f"session {session_id}: chatCount {session.get('chatCount')}, {len(chats)} chats stored",
        )
        kept = data.kept.get(session_id, {})

        def kept_for_forks(
            m: dict[str, Any], chats: dict[str, dict[str, Any]] = chats, kept: dict[str, int] = kept
        ) -> bool:
            chat_id = str(m["SK"]).split("#")[1]
            return chat_id not in chats and chat_id in kept and _num(m.get("seq")) <= kept[chat_id]

        # A user message is counted with its reply (the counters move in the reply's transaction);
        # a reply still generating, failed or cancelled is not counted (README, "Replies that
        # outlive the request"); what a deleted chat keeps for its forks is no longer counted.
        counted = [m for m in messages if counts(m) and not kept_for_forks(m)]
        check(
            "session messageCount = answered messages",
            _num(session.get("messageCount")) == len(counted),
            f"session {session_id}: messageCount {session.get('messageCount')}, {len(counted)} counted stored",
        )
        heads = data.heads.get(session_id, set())
        check("every chat has its head", set(chats) <= heads, f"session {session_id}: heads {heads}, chats {chats}")
        by_chat: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in messages:
            chat_of = str(message["SK"]).split("#")[1]
            by_chat[chat_of].append(message)
            all_ids[f"{chat_of}/{message.get('messageId')}"] += 1
        for chat_id, kept_messages in by_chat.items():
            orphans = [m for m in kept_messages if chat_id not in chats and not kept_for_forks(m)]
            check("no orphan chats or messages", not orphans, f"session {session_id}: messages of gone {chat_id}")
        for chat_id, chat in chats.items():
            stored = sorted(by_chat.get(chat_id, []), key=lambda m: _num(m.get("seq")))
            seqs = [_num(m.get("seq")) for m in stored]
            lineage = chat.get("lineage") or []
            first = _num(lineage[-1]["toSeq"]) + 1 if lineage else 1
            check(
                "seq exactly 1..N (a fork: from its shared history on)",
                seqs == list(range(first, first + len(seqs))),
                f"chat {chat_id}: seqs {seqs}, first {first}",
            )
            answered = [m for m in stored if counts(m)]
            check(
                "chat messageCount = answered messages",
                _num(chat.get("messageCount")) == len(answered),
                f"chat {chat_id}: messageCount {chat.get('messageCount')}, {len(answered)} counted stored",
            )
            if "lastSeq" in chat:
                check(
                    "chat lastSeq = last seq",
                    _num(chat.get("lastSeq")) == (seqs[-1] if seqs else 0),
                    f"chat {chat_id}: lastSeq {chat.get('lastSeq')}, seqs {seqs}",
                )
            contents = Counter(str(m.get("content")) for m in stored if m.get("role") == "user")
            twice = {c: n for c, n in contents.items() if n > 1}
            check("each user message stored once", not twice, f"chat {chat_id}: stored more than once: {twice}")
    twice_ids = [i for i, n in all_ids.items() if n > 1]
    check("messageId unique in its chat", not twice_ids, f"{user}: messageIds stored twice: {twice_ids}")
    return bad


def _deleted(calls: list[Call]) -> set[str]:
    """Every session and chat id the scenario tried to delete (a delete that answered 503 may
    still have happened)."""
    gone: set[str] = set()
    for call in calls:
        if call.method == "DELETE":
            gone.update(part for part in call.path.strip("/").split("/")[1::2])
    return gone


def check_created(items: list[dict[str, Any]], calls: list[Call], recorder: Recorder) -> list[str]:
    """Every 201 the scenario got is stored, as answered."""
    gone = _deleted(calls)
    sessions = {str(i["SK"])[len("SESSION#") :] for i in items if str(i["SK"]).startswith("SESSION#")}
    chats = {str(i["SK"])[len("CHAT#") :] for i in items if str(i["SK"]).startswith("CHAT#")}
    messages = {str(i.get("messageId")): i for i in items if str(i["SK"]).startswith("MSG#")}
    bad: list[str] = []
    for call in calls:
        if call.status not in (201, 202):  # 202: a reply that outlives the request, answered generating
            continue
        body = json.loads(call.body)
        if "chatId" in body and "userMessage" not in body:
            if body["chatId"] in gone or body["sessionId"] in gone:
                continue
            recorder.checked("every 201 stored")
            if body["chatId"] not in chats:
                bad.append(f"every 201 stored: chat {body['chatId']} ({call.route}) is not stored")
        elif "userMessage" in body:
            for role in ("userMessage", "assistantMessage"):
                message = body[role]
                if message["chatId"] in gone or message["sessionId"] in gone:
                    continue
                recorder.checked("every 201 stored")
                stored = messages.get(message["messageId"])
                if stored is None:
                    bad.append(f"every 201 stored: {role} {message['messageId']} ({call.route}) is not stored")
                elif _num(stored.get("seq")) != message["seq"] or (
                    stored.get("content") != message["content"] and message.get("status") != "generating"
                ):
                    bad.append(
                        f"every 201 stored: {role} {message['messageId']} answered seq {message['seq']}, "
                        f"stored seq {stored.get('seq')}"
                    )
        elif "sessionId" in body:
            if body["sessionId"] in gone:
                continue
            recorder.checked("every 201 stored")
            if body["sessionId"] not in sessions:
                bad.append(f"every 201 stored: session {body['sessionId']} ({call.route}) is not stored")
    return bad
