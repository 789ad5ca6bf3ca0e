"""Failpoints: named places where a chaos test can make the process die at once.

`AMESA_FAILPOINTS=after_payment_intent` makes `failpoint("after_payment_intent")` kill the
process with SIGKILL — no cleanup, no graceful shutdown, exactly as a power cut would — so a
test can prove that what the code does next is recoverable. Production refuses the variable
(server/core/settings.py), and with it unset a failpoint is one set lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Final

ENABLED: Final = frozenset(
    name.strip() for name in os.environ.get("AMESA_FAILPOINTS", "").split(",") if name.strip()
)


def failpoint(name: str) -> None:
    if name in ENABLED:
        os.kill(os.getpid(), signal.SIGKILL)
