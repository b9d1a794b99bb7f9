"""Server-generated ids: ULIDs, so ids sort by creation time and listings need no extra index.

Ids from request paths are checked against this alphabet before they become part of a key;
anything else (``#``, ``/``, lower case, wrong length) is treated as "no such resource".
"""

from __future__ import annotations

import os
import re
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
"""A ULID as this server writes it (Crockford base32, upper case); the OpenAPI document states it."""
_ULID_RE = re.compile(PATTERN)

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id() -> str:
    """A monotonic ULID: ids made in one process within one millisecond still sort in order,
    so "newest first" listings stay exact for rapid creates. Within a millisecond the random
    part grows above the characters :func:`message_id` replaces, so two message ids made in one
    millisecond at the same seq still differ (growing by 1, they were equal, and a send took a
    concurrent send's message at that seq for its own)."""
    global _last_ms, _last_rand
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            _last_rand += 1 << (5 * SEQ_CHARS)
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms = now_ms
        return _encode(now_ms, 10) + _encode(_last_rand, 16)


def is_valid_id(value: str) -> bool:
    """True when ``value`` has the exact form of an id this server issues."""
    return bool(_ULID_RE.fullmatch(value))


SEQ_CHARS = 7
"""The last characters of a message id carry its seq (35 bits, more than ``keys.MAX_SEQ``)."""


def message_id(base: str, seq: int) -> str:
    """The id of a message at ``seq``: ``base`` (a fresh ULID, one per request) with its last
    random characters replaced by the seq. Still a ULID of the server's form, still unique
    (time and 45 random bits), and it names its message's seq, so an edit finds the message
    its path names with one read (no index by id): the id is then checked against the item."""
    return base[: len(base) - SEQ_CHARS] + _encode(seq, SEQ_CHARS)


def seq_in(message_id: str) -> int | None:
    """The seq a message id names (None when it is not an id of the server's form)."""
    if not is_valid_id(message_id):
        return None
    seq = 0
    for char in message_id[-SEQ_CHARS:]:
        seq = seq * 32 + _CROCKFORD.index(char)
    return seq
