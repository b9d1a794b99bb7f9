"""Subscribes raced with their connection's ``$disconnect`` by real threads against moto's server
mode: afterwards no subscription is left whose connection is gone (a push would otherwise keep
finding it until TTL), and every subscription a live connection was told it has is stored."""

from __future__ import annotations

from typing import Any

from chat_sessions import keys
from chat_sessions.models import CreateChatRequest
from chat_sessions.services import chats, subscriptions
from chat_sessions.services.subscriptions import ConnectionClosed
from chat_sessions.store import get_store
from tests.concurrency.test_invariants import new_session, race
from tests.support import table_items

CHATS = 5
ROUNDS = 4


def test_no_subscription_outlives_its_disconnect(server_table: str) -> None:
    store = get_store()
    sid = new_session()
    chat_ids = [chats.create_chat(store, "alice", sid, CreateChatRequest(name=f"c{i}")).chat_id for i in range(CHATS)]
    outcomes: list[Any] = []
    for round_ in range(ROUNDS):
        connection = f"race-{round_}="
        subscriptions.connect(store, "alice", connection)

        def work(i: int, connection: str = connection) -> Any:
            if i == CHATS:
                return subscriptions.disconnect(store, "alice", connection)
            subscriptions.subscribe(store, "alice", connection, sid, chat_ids[i])
            return "subscribed"

        outcomes += race(CHATS + 1, work)
    items = table_items(server_table)
    connections = {i["SK"] for i in items if i["SK"].startswith(keys.CONNECTION_PREFIX)}
    subscribed = [i for i in items if i["SK"].startswith(keys.SUBSCRIPTION_PREFIX)]
    assert connections == set()  # every round ended with its disconnect
    assert subscribed == []  # so no subscription may be left
    refused = [o for o in outcomes if isinstance(o, ConnectionClosed)]
    assert all(o == "subscribed" or isinstance(o, ConnectionClosed | int) for o in outcomes), outcomes
    # Each subscribe either landed before its connection's disconnect (which deleted it: the
    # disconnects' counts) or was refused after it: together, every subscribe.
    deleted = sum(o for o in outcomes if isinstance(o, int) and not isinstance(o, bool))
    assert deleted + len(refused) == CHATS * ROUNDS
