"""LotteryService.WatchHouse, kept apart from the catalogue and ticket RPCs.

LotteryServicer inherits this class and sets `self._deps`; until WatchHouse is built it falls
through to the generated base and answers UNIMPLEMENTED.
"""

from __future__ import annotations

from server.core.deps import Deps


class WatchRpcs:
    _deps: Deps
