"""LotteryService.WatchHouse, kept apart from the catalogue and ticket RPCs.

LotteryServicer inherits this class and sets `self._deps`. The stream and its events live in
server/lottery/house_events.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.core.context import current_principal
from server.core.deps import Deps
from server.core.names import parse_id, parse_name
from server.lottery.house_events import watch_house

Context = grpc.aio.ServicerContext[Any, Any]


class WatchRpcs:
    _deps: Deps

    async def WatchHouse(
        self, request: pb.WatchHouseRequest, context: Context
    ) -> AsyncIterator[pb.WatchHouseResponse]:
        principal = current_principal()
        (segment,) = parse_name(request.name, "houses")
        stream = watch_house(
            database=self._deps.database,
            events=self._deps.events,
            shutting_down=self._deps.shutting_down,
            house_id=parse_id(segment),
            admin=principal is not None and principal.is_admin,
            media_base_url=self._deps.settings.media_base_url,
            heartbeat_seconds=self._deps.settings.notify.heartbeat_seconds,
        )
        async for message in stream:
            yield message
