"""Every notification topic the server enqueues has a route (else it would wait for ever)."""

from __future__ import annotations

import re
from pathlib import Path

from server.notify.dispatcher import owned_topics

SERVER = Path(__file__).resolve().parents[2] / "server"
TOPIC = re.compile(r"""topic=["']((?:email|sms|notify)\.[a-z0-9_]+)["']""")


def test_every_enqueued_notification_topic_is_dispatched() -> None:
    enqueued = {
        match.group(1)
        for path in SERVER.rglob("*.py")
        if "notify" not in path.parts
        for match in TOPIC.finditer(path.read_text())
    }

    assert enqueued, "the scan found no topics: has the enqueue call changed shape?"
    assert enqueued - set(owned_topics()) == set()
