"""The single-table layout: the only module that builds ``PK``/``SK`` values.

Every key starts with the caller's user id, so no request can name an item of another user,
and every id is checked against the server's id alphabet before it is placed in a key.

Layout (see the README's access-pattern table):

    USER#<user>                         SESSION#<sessionId>          session
    USER#<user>                         QUOTA                        active-session counter
    (index ByStatus: USER#<user>, statusSk <status>#<sessionId>: the sessions by status)
    USER#<user>#SESSION#<sessionId>     CHAT#<chatId>                chat
    USER#<user>#SESSION#<sessionId>     MSG#<chatId>                 chat head (model, system prompt)
    USER#<user>#SESSION#<sessionId>     MSG#<chatId>#<MAX_SEQ - seq> message, newest first
    USER#<user>#SESSION#<sessionId>     MSG#<chatId>#<MAX_SEQ>       a fork's base (its lineage), or the
                                                                     mark of a deleted chat whose oldest
                                                                     messages forks still share (seq 0)
    USER#<user>#IDEMPOTENCY             <function>#<hash>            idempotency record
    USER#<user>#IDEMPOTENCY             KEY#<hash>                   what a keyed create or send stored
    USER#<user>                         WSCONN#<connectionId>        a WebSocket connection (its subscriptions)
    USER#<user>#SESSION#<sessionId>     SUB#<chatId>#<connectionId>  a connection subscribed to a chat
"""

from __future__ import annotations

import re
from typing import TypedDict

from chat_sessions.errors import NotFound, Unauthorized
from chat_sessions.ids import is_valid_id

PK = "PK"
SK = "SK"
SESSION_PREFIX = "SESSION#"
CHAT_PREFIX = "CHAT#"
QUOTA_SK = "QUOTA"
SEQ_WIDTH = 10
MAX_SEQ = 10**SEQ_WIDTH - 1


class Key(TypedDict):
    PK: str
    SK: str


def _user(user_id: str) -> str:
    # Escaping keeps the user part injective and free of the "#" separator, whatever the
    # identity provider puts in `sub`. A `sub` that is not Unicode text (a lone surrogate, which
    # JSON can carry) has no UTF-8 form, so DynamoDB cannot hold it as a key: the token is
    # refused before any key exists, rather than failing later as some unrelated error.
    if not user_id or len(user_id) > 256 or not _is_text(user_id):
        raise Unauthorized("The token has no usable subject.")
    return "USER#" + user_id.replace("%", "%25").replace("#", "%23")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _checked(resource: str, value: str) -> str:
    if not is_valid_id(value):
        raise NotFound(f"{resource} not found.")
    return value


def user_pk(user_id: str) -> str:
    return _user(user_id)


def session_key(user_id: str, session_id: str) -> Key:
    return {"PK": _user(user_id), "SK": SESSION_PREFIX + _checked("Session", session_id)}


def quota_key(user_id: str) -> Key:
    return {"PK": _user(user_id), "SK": QUOTA_SK}


# --- Erasure (DELETE /me, chat_sessions.services.erasure) -----------------------------------
# The erasure marker is the user's counters item (``quota_key``) carrying ``erasingSince``: a
# session create's quota increment is conditioned on its absence (so no new session appears
# while the user's items are being found and deleted), the ``erase_user`` stream consumer is
# invoked for every INSERT/MODIFY of a counters item whose new image carries it, and the REMOVE
# of a counters item whose old image carries it is the end of the erasure (``user.erased``).

ERASING_SINCE = "erasingSince"
"""On the counters item while the user is being erased: when ``DELETE /me`` first asked (ISO)."""
ERASING_SESSION = "erasingSession"
"""On the marker: the session whose partition the erasure is purging (its session item is gone)."""
ERASURE_RUNS = "erasureRuns"
"""On the marker: one more per ``DELETE /me`` and per continuation (each a stream record)."""


def user_of_pk(pk: str) -> str | None:
    """The user id of a user partition key (``user_pk``'s inverse); None for any other key."""
    if not pk.startswith("USER#") or "#" in pk[len("USER#") :]:
        return None
    user_id = pk[len("USER#") :].replace("%23", "#").replace("%25", "%")  # every "%" starts an escape
    try:
        return user_id if _user(user_id) == pk else None
    except Unauthorized:
        return None


def erased_after_sessions(user_id: str) -> list[str]:
    """The user's partitions other than their own and their sessions', which the erasure purges
    once no session is left: every partition key built from the user id alone goes here."""
    return [idempotency_pk(user_id)]


EXPIRED_PREFIX = "EXPIRED#"


def expired_session(pk: str, sk: str) -> tuple[Key, Key] | None:
    """For the keys of a removed session item (a stream record's): the user's counters item and
    the receipt ``USER#<user> | EXPIRED#<sessionId>`` whose creation takes an expired session off
    the counters exactly once (``store.sessions.SessionStore.count_expired``). None for any other
    item. The receipt is in the user's partition, never in the session's (which the purge empties)."""
    session_id = sk[len(SESSION_PREFIX) :]
    if not pk.startswith("USER#") or "#" in pk[len("USER#") :] or not sk.startswith(SESSION_PREFIX):
        return None
    if not is_valid_id(session_id):
        return None
    return {"PK": pk, "SK": QUOTA_SK}, {"PK": pk, "SK": EXPIRED_PREFIX + session_id}


STATUS_INDEX = "ByStatus"
"""A local secondary index of the user partition: sessions by ``statusSk``, read strongly
consistent like the table (the only items with that attribute are sessions)."""
STATUS_SK = "statusSk"


def status_sk(status: str, session_id: str | None = None) -> str:
    """A session's sort key in the ``ByStatus`` index, ``<status>#<sessionId>``: one range per
    status, newest last (ids are ULIDs); without ``session_id``, the prefix of the range."""
    if status not in ("active", "paused", "archived"):
        raise ValueError(f"no such status: {status}")
    return f"{status}#" + ("" if session_id is None else _checked("Session", session_id))


def session_partition(user_id: str, session_id: str) -> str:
    """The partition holding one session's chats and messages (deleted with the session)."""
    return _session_partition(session_key(user_id, session_id))


def _session_partition(session: Key) -> str:
    # A session's partition is its own key, joined: PK=USER#u, SK=SESSION#s -> USER#u#SESSION#s.
    return f"{session['PK']}#{session['SK']}"


def chat_key(user_id: str, session_id: str, chat_id: str) -> Key:
    return {
        "PK": session_partition(user_id, session_id),
        "SK": CHAT_PREFIX + _checked("Chat", chat_id),
    }


def head_sk(chat_id: str) -> str:
    """The chat's head: what a send needs of the chat (model, system prompt), stored right
    before its messages so that one query returns it and the newest messages together."""
    return f"MSG#{_checked('Chat', chat_id)}"


def head_key(user_id: str, session_id: str, chat_id: str) -> Key:
    return {"PK": session_partition(user_id, session_id), "SK": head_sk(chat_id)}


def head_key_in(partition: str, chat_id: str) -> Key:
    """A chat's head, by the session partition a stream record names."""
    return {"PK": partition, "SK": head_sk(chat_id)}


def message_prefix(chat_id: str) -> str:
    """Every message of a chat, and nothing else, begins with this."""
    return head_sk(chat_id) + "#"


def message_sk(chat_id: str, seq: int) -> str:
    """Sort keys count down from ``MAX_SEQ``: ascending order is newest first, right after
    the head, so the newest messages are the first items of the chat's range."""
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq out of range: {seq}")
    return f"{message_prefix(chat_id)}{MAX_SEQ - seq:0{SEQ_WIDTH}d}"


def message_key(user_id: str, session_id: str, chat_id: str, seq: int) -> Key:
    return {"PK": session_partition(user_id, session_id), "SK": message_sk(chat_id, seq)}


def base_key(user_id: str, session_id: str, chat_id: str) -> Key:
    """Seq 0 of a chat's range: the last item of the range by sort key, so a listing oldest
    first (a backward scan) meets it before any message. A fork keeps its lineage there; a
    deleted chat whose messages forks share marks itself deleted there."""
    return message_key(user_id, session_id, chat_id, 0)


def seq_range(chat_id: str, low: int, high: int) -> tuple[str, str]:
    """The sort keys bounding a chat's messages ``low..high`` (inclusive), smallest first, for
    ``SK BETWEEN``: the sort keys count down, so the newest (``high``) sorts first."""
    return message_sk(chat_id, min(high, MAX_SEQ)), message_sk(chat_id, max(low, 0))


def seq_of(chat_id: str, sort_key: str) -> int:
    """The seq a message sort key of ``chat_id`` stands for (the inverse of ``message_sk``)."""
    prefix = message_prefix(chat_id)
    digits = sort_key[len(prefix) :]
    if not sort_key.startswith(prefix) or len(digits) != SEQ_WIDTH or not digits.isdigit():
        raise ValueError(f"not a message sort key of chat {chat_id}: {sort_key!r}")
    seq: int = MAX_SEQ - int(digits)
    return seq


def idempotency_pk(user_id: str) -> str:
    """Idempotency records live in the caller's own partition: keys are scoped per user."""
    return f"{_user(user_id)}#IDEMPOTENCY"


def marker_key(user_id: str, key_hash: str) -> Key:
    """What an ``Idempotency-Key`` stored (per user, per route, per key): a message, a session
    or a chat."""
    if not (0 < len(key_hash) <= 64 and all(c in "0123456789abcdef" for c in key_hash)):
        raise ValueError("key_hash must be lower-case hex")
    return {"PK": idempotency_pk(user_id), "SK": "KEY#" + key_hash}


def sk_prefix_of_listing(listing: str, chat_id: str | None = None) -> str:
    """The sort-key prefix a listing covers, used to check that a cursor belongs to it."""
    if listing == "sessions":
        return SESSION_PREFIX
    if listing == "chats":
        return CHAT_PREFIX
    if listing == "messages" and chat_id is not None:
        return message_prefix(chat_id)
    raise ValueError(listing)


def removed_chat(pk: str, sk: str) -> str | None:
    """The chat id of a removed chat item (None for any other item)."""
    if "#" + SESSION_PREFIX in pk and sk.startswith(CHAT_PREFIX) and is_valid_id(sk[len(CHAT_PREFIX) :]):
        return sk[len(CHAT_PREFIX) :]
    return None


def children_of_removed(pk: str, sk: str) -> tuple[str, str] | None:
    """For a removed item, the partition and sort-key prefix of what it owned: a session owns its
    whole partition, a chat its messages. None for items that own nothing."""
    if pk.startswith("USER#") and sk.startswith(SESSION_PREFIX) and is_valid_id(sk[len(SESSION_PREFIX) :]):
        return _session_partition({"PK": pk, "SK": sk}), ""
    if "#" + SESSION_PREFIX in pk and sk.startswith(CHAT_PREFIX) and is_valid_id(sk[len(CHAT_PREFIX) :]):
        return pk, head_sk(sk[len(CHAT_PREFIX) :])  # the head and every message
    return None


def user_of_key(pk: str) -> str | None:
    """The user whose item has partition key ``pk`` (any partition of theirs: their own, a
    session's, their idempotency records'), for stream consumers that see keys only; None for a
    key this layout did not build. The user part never holds a ``#`` (it is escaped)."""
    if not pk.startswith("USER#"):
        return None
    escaped = pk[len("USER#") :].split("#", 1)[0]
    user_id = escaped.replace("%23", "#").replace("%25", "%")  # every "%" in it starts an escape
    try:
        return user_id if _user(user_id) == "USER#" + escaped else None
    except Unauthorized:
        return None


# --- WebSocket push (chat_sessions.push) --------------------------------------------------------

CONNECTION_PREFIX = "WSCONN#"
SUBSCRIPTION_PREFIX = "SUB#"
_CONNECTION_ID = re.compile(r"[A-Za-z0-9+/=_-]{1,128}")
"""API Gateway's connection ids (``L0SM9cOFvHcCIhw=``): base64 text, never a ``#``."""


def is_valid_connection_id(value: object) -> bool:
    return isinstance(value, str) and _CONNECTION_ID.fullmatch(value) is not None


def _connection(connection_id: str) -> str:
    if not is_valid_connection_id(connection_id):
        raise ValueError(f"not a connection id: {connection_id!r}")
    return connection_id


def connection_key(user_id: str, connection_id: str) -> Key:
    """A WebSocket connection, in its user's partition (erased with the user); it lists the
    chats it subscribed to, so ``$disconnect`` finds their subscription items without a query."""
    return {"PK": _user(user_id), "SK": CONNECTION_PREFIX + _connection(connection_id)}


def subscription_prefix(chat_id: str) -> str:
    """Every subscription to a chat, and nothing else, begins with this (in the session's partition)."""
    return f"{SUBSCRIPTION_PREFIX}{_checked('Chat', chat_id)}#"


def subscription_key(user_id: str, session_id: str, chat_id: str, connection_id: str) -> Key:
    """A connection subscribed to a chat: in the session's partition, next to the chat, so one
    query by chat finds every subscriber and deleting the session purges them with it."""
    return {
        "PK": session_partition(user_id, session_id),
        "SK": subscription_prefix(chat_id) + _connection(connection_id),
    }


def subscription_ref(session_id: str, chat_id: str) -> str:
    """How a connection item names one of its subscriptions (``<sessionId>#<chatId>``)."""
    return f"{_checked('Session', session_id)}#{_checked('Chat', chat_id)}"


def subscription_key_of_ref(user_id: str, ref: str, connection_id: str) -> Key:
    session_id, _, chat_id = ref.partition("#")
    return subscription_key(user_id, session_id, chat_id, connection_id)


def message_chat(pk: str, sk: str) -> tuple[str, str] | None:
    """For a message item's keys (a stream record's), the session partition and the chat id;
    None for any other item (a chat head, a fork's base, anything outside a session)."""
    if "#" + SESSION_PREFIX not in pk or not sk.startswith("MSG#"):
        return None
    chat_id, _, digits = sk[len("MSG#") :].partition("#")
    if not is_valid_id(chat_id) or len(digits) != SEQ_WIDTH or not digits.isdigit() or int(digits) == MAX_SEQ:
        return None
    return pk, chat_id


def subscription_prefix_in(partition: str, chat_id: str) -> tuple[str, str]:
    """The partition and sort-key prefix of a chat's subscriptions, by the partition a stream
    record names."""
    return partition, subscription_prefix(chat_id)
