"""gRPC adapter of LotteryService.

Built so far: the house catalogue (GetHouse, ListHouses), the admin house lifecycle (CreateHouse,
UpdateHouse, DeleteHouse, PublishHouse, CancelHouse), images, favorites, the ticket reads
(GetTicket, ListTickets, GetTicketInclusionProof) and GetLotteryStats.
WatchHouse is in watch_servicer.py; PublishHouse and CancelHouse publish its events after
commit (house_events.py). Every other RPC (PurchaseTickets, draws) inherits the generated base
implementation, answered with UNIMPLEMENTED / NOT_IMPLEMENTED.

Public catalogue reads by non-administrators are cached (server/lottery/cache.py); every write
here invalidates the cache after its transaction committed.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from google.protobuf import empty_pb2

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from server.core.context import Principal, current_principal, require_principal
from server.core.deps import Deps
from server.core.errors import NotFound
from server.core.names import parse_id, parse_name, resolve_user
from server.core.pagination import page_size
from server.lottery import (
    catalogue,
    draws,
    entrylog,
    favorites,
    house_events,
    houses,
    images,
    mapping,
    stats,
    tickets,
)
from server.lottery.cache import CatalogueCache
from server.lottery.lifecycle import utcnow
from server.lottery.models import House, HouseState
from server.lottery.scheduler import Scheduler
from server.lottery.watch_servicer import WatchRpcs
from server.payment.checkout import Checkout
from server.payment.mapping import PROVIDER_FROM_PROTO, order_to_proto
from server.payment.models import PaymentProvider
from server.payment.orders import PurchaseRequest

Context = grpc.aio.ServicerContext[Any, Any]


def _house_id(name: str, *, field: str = "name") -> uuid.UUID:
    return parse_id(parse_name(name, "houses", field=field)[0], field=field)


def _image_id(name: str, house_id: uuid.UUID, *, field: str) -> uuid.UUID | None:
    """The image id of `houses/{house}/images/{image}`; None if it names another house."""
    house_segment, image_segment = parse_name(name, "houses", "images", field=field)
    image_id = parse_id(image_segment, field=field)
    return image_id if parse_id(house_segment, field=field) == house_id else None


def _ticket(name: str, principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    """(owner, ticket id) of `users/{user}/tickets/{ticket}`, with the ownership rule."""
    user, ticket = parse_name(name, "users", "tickets")
    return resolve_user(user, principal), parse_id(ticket)


def _ticket_filter(request: pb.ListTicketsRequest, principal: Principal) -> tickets.TicketFilter:
    order_id = None
    if request.order:
        order_user, order = parse_name(request.order, "users", "orders", field="order")
        resolve_user(order_user, principal, field="order")
        order_id = parse_id(order, field="order")
    return tickets.TicketFilter(
        house_id=_house_id(request.house, field="house") if request.house else None,
        order_id=order_id,
        states=frozenset(mapping.ticket_state_from_proto(state) for state in request.states),
    )


def _draw_house_id(name: str) -> uuid.UUID:
    """The house of the singleton `houses/{house}/draw`."""
    house, slash, singleton = name.rpartition("/")
    if not slash or singleton != "draw":
        return _house_id(name + "/")  # refuses with the pattern's message
    return _house_id(house)


def _is_admin(principal: Principal | None) -> bool:
    return principal is not None and principal.is_admin


class LotteryServicer(WatchRpcs, lottery_service_pb2_grpc.LotteryServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._database = deps.database
        self._cache = CatalogueCache(deps.redis)
        self._media_base_url = deps.settings.media_base_url
        self._media_dir = deps.settings.media_dir
        self._image_hosts = deps.settings.image_hosts
        self._scheduler = Scheduler.from_deps(deps)
        self._checkout = Checkout(deps)
        self._signer = self._scheduler.signer

    def _house(self, house: House) -> pb.House:
        return mapping.house_to_proto(
            house, images=list(house.images), media_base_url=self._media_base_url
        )

    # --- Catalogue -------------------------------------------------------------------------

    async def GetHouse(self, request: pb.GetHouseRequest, context: Context) -> pb.House:
        admin = _is_admin(current_principal())
        house_id = _house_id(request.name)
        if admin:
            return await self._get_house(house_id, admin=True)
        return await self._cache.fetch(
            request, pb.House, lambda: self._get_house(house_id, admin=False)
        )

    async def _get_house(self, house_id: uuid.UUID, *, admin: bool) -> pb.House:
        async with self._database.session(system=True) as session:
            house = await catalogue.get_house(session, house_id=house_id, admin=admin)
            return self._house(house)

    async def ListHouses(
        self, request: pb.ListHousesRequest, context: Context
    ) -> pb.ListHousesResponse:
        admin = _is_admin(current_principal())
        if admin:
            return await self._list_houses(request, admin=True)
        return await self._cache.fetch(
            request, pb.ListHousesResponse, lambda: self._list_houses(request, admin=False)
        )

    async def _list_houses(
        self, request: pb.ListHousesRequest, *, admin: bool
    ) -> pb.ListHousesResponse:
        spec = mapping.house_filter_from_proto(request)
        order = catalogue.parse_order_by(
            request.order_by, has_query=bool(spec.query), has_near=spec.near is not None
        )
        filters = mapping.list_filters_digest_input(request, admin=admin)
        cursor = self._deps.page_tokens.decode(request.page_token, filters=filters)
        async with self._database.session(system=True) as session:
            page = await catalogue.list_houses(
                session,
                spec=spec,
                order=order,
                cursor=cursor,
                page_size=page_size(request.page_size),
                admin=admin,
            )
            houses_pb = [self._house(house) for house in page.houses]
        return pb.ListHousesResponse(
            houses=houses_pb,
            next_page_token=(
                self._deps.page_tokens.encode(page.next_cursor, filters=filters)
                if page.next_cursor is not None
                else ""
            ),
            total_size=page.total_size,
        )

    # --- Admin writes ----------------------------------------------------------------------

    async def CreateHouse(self, request: pb.CreateHouseRequest, context: Context) -> pb.House:
        principal = require_principal()
        values = mapping.house_columns(
            request.house, frozenset(mapping.LISTING_PATHS + mapping.TERMS_PATHS)
        )
        async with self._database.session(principal) as session:
            house = await houses.create_house(
                session,
                values=values,
                request_id=uuid.UUID(request.request_id) if request.request_id else None,
                actor=principal,
                signer=self._signer,
            )
            response = self._house(house)
        await self._cache.invalidate()
        return response

    async def UpdateHouse(self, request: pb.UpdateHouseRequest, context: Context) -> pb.House:
        principal = require_principal()
        house_id = _house_id(request.house.name, field="house.name")
        paths = houses.normalise_mask(request.update_mask.paths)
        values = mapping.house_columns(request.house, paths)
        async with self._database.session(principal) as session:
            house = await houses.update_house(
                session,
                house_id=house_id,
                paths=paths,
                values=values,
                actor=principal,
                signer=self._signer,
            )
            response = self._house(house)
        await self._cache.invalidate()
        return response

    async def DeleteHouse(
        self, request: pb.DeleteHouseRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        async with self._database.session(principal) as session:
            await houses.delete_house(session, house_id=_house_id(request.name), actor=principal)
        await self._cache.invalidate()
        return empty_pb2.Empty()

    async def PublishHouse(self, request: pb.PublishHouseRequest, context: Context) -> pb.House:
        principal = require_principal()
        async with self._database.session(principal) as session:
            house = await houses.publish_house(
                session, house_id=_house_id(request.name), actor=principal, signer=self._signer
            )
            response = self._house(house)
        await self._cache.invalidate()
        await house_events.state_changed(self._deps.events, house, previous=HouseState.DRAFT)
        return response

    async def CancelHouse(self, request: pb.CancelHouseRequest, context: Context) -> pb.House:
        principal = require_principal()
        async with self._database.session(principal) as session:
            house = await houses.cancel_house(
                session, house_id=_house_id(request.name), reason=request.reason, actor=principal
            )
            response = self._house(house)
        await self._cache.invalidate()
        await house_events.cancelled(self._deps.events, house)
        return response

    # --- Images ----------------------------------------------------------------------------

    async def AddHouseImage(
        self, request: pb.AddHouseImageRequest, context: Context
    ) -> pb.HouseImage:
        principal = require_principal()
        house_id = _house_id(request.parent, field="parent")
        async with (
            images.staged_source(
                data=request.image_data if request.WhichOneof("source") == "image_data" else None,
                uri=request.image_uri,
                media_dir=self._media_dir,
                allowed_hosts=self._image_hosts,
            ) as source,
            self._database.session(principal) as session,
        ):
            image = await images.add_image(
                session,
                house_id=house_id,
                source=source,
                alt_text=request.alt_text,
                position=request.position if request.HasField("position") else None,
                actor=principal,
            )
        await self._cache.invalidate()
        return mapping.image_to_proto(image, media_base_url=self._media_base_url)

    async def DeleteHouseImage(
        self, request: pb.DeleteHouseImageRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        house_segment, image_segment = parse_name(request.name, "houses", "images")
        async with self._database.session(principal) as session:
            stored = await images.delete_image(
                session,
                house_id=parse_id(house_segment),
                image_id=parse_id(image_segment),
                actor=principal,
            )
        await self._cache.invalidate()
        await images.remove_file(stored, media_dir=self._media_dir)
        return empty_pb2.Empty()

    async def ReorderHouseImages(
        self, request: pb.ReorderHouseImagesRequest, context: Context
    ) -> pb.ReorderHouseImagesResponse:
        principal = require_principal()
        house_id = _house_id(request.parent, field="parent")
        image_ids = [_image_id(name, house_id, field="images") for name in request.images]
        async with self._database.session(principal) as session:
            ordered = await images.reorder_images(
                session, house_id=house_id, image_ids=image_ids, actor=principal
            )
        await self._cache.invalidate()
        return pb.ReorderHouseImagesResponse(
            images=[
                mapping.image_to_proto(image, media_base_url=self._media_base_url)
                for image in ordered
            ]
        )

    # --- Tickets -------------------------------------------------------------------------------

    async def GetTicket(self, request: pb.GetTicketRequest, context: Context) -> pb.Ticket:
        principal = require_principal()
        user_id, ticket_id = _ticket(request.name, principal)
        async with self._database.session(principal) as session:
            issued = await tickets.get_ticket(session, user_id=user_id, ticket_id=ticket_id)
            return mapping.ticket_to_proto(issued.ticket, leaf_hash=issued.leaf_hash)

    async def ListTickets(
        self, request: pb.ListTicketsRequest, context: Context
    ) -> pb.ListTicketsResponse:
        principal = require_principal()
        (user,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(user, principal, field="parent")
        spec = _ticket_filter(request, principal)
        filters = {
            "user": str(user_id),
            "house": str(spec.house_id or ""),
            "order": str(spec.order_id or ""),
            "states": sorted(spec.states),
        }
        cursor = self._deps.page_tokens.decode(request.page_token, filters=filters)
        async with self._database.session(principal) as session:
            page = await tickets.list_tickets(
                session,
                user_id=user_id,
                spec=spec,
                cursor=cursor,
                page_size=page_size(request.page_size),
            )
        return pb.ListTicketsResponse(
            tickets=[
                mapping.ticket_to_proto(t.ticket, leaf_hash=t.leaf_hash) for t in page.tickets
            ],
            next_page_token=(
                self._deps.page_tokens.encode(page.next_cursor, filters=filters)
                if page.next_cursor is not None
                else ""
            ),
            total_size=page.total_size,
        )

    async def GetTicketInclusionProof(
        self, request: pb.GetTicketInclusionProofRequest, context: Context
    ) -> pb.TicketInclusionProof:
        principal = require_principal()
        user_id, ticket_id = _ticket(request.name, principal)
        async with self._database.session(principal) as session:
            issued = await tickets.get_ticket(session, user_id=user_id, ticket_id=ticket_id)
            proof = await entrylog.inclusion_proof(
                session, ticket=issued.ticket, leaf_hash=issued.leaf_hash
            )
            return mapping.inclusion_proof_to_proto(proof)

    # --- Favorites -------------------------------------------------------------------------

    async def AddFavoriteHouse(
        self, request: pb.AddFavoriteHouseRequest, context: Context
    ) -> pb.FavoriteHouse:
        principal = require_principal()
        (user,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(user, principal, field="parent")
        house_id = _house_id(request.house, field="house")
        async with self._database.session(principal) as session:
            favorite, house = await favorites.add_favorite(
                session, user_id=user_id, house_id=house_id
            )
            return mapping.favorite_to_proto(favorite, self._house(house))

    async def RemoveFavoriteHouse(
        self, request: pb.RemoveFavoriteHouseRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user, house = parse_name(request.name, "users", "favoriteHouses")
        user_id = resolve_user(user, principal)
        async with self._database.session(principal) as session:
            await favorites.remove_favorite(session, user_id=user_id, house_id=parse_id(house))
        return empty_pb2.Empty()

    async def ListFavoriteHouses(
        self, request: pb.ListFavoriteHousesRequest, context: Context
    ) -> pb.ListFavoriteHousesResponse:
        principal = require_principal()
        (user,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(user, principal, field="parent")
        filters = {"user": str(user_id)}
        cursor = self._deps.page_tokens.decode(request.page_token, filters=filters)
        async with self._database.session(principal) as session:
            page = await favorites.list_favorites(
                session, user_id=user_id, cursor=cursor, page_size=page_size(request.page_size)
            )
            items = [
                mapping.favorite_to_proto(favorite, self._house(house))
                for favorite, house in page.favorites
            ]
        return pb.ListFavoriteHousesResponse(
            favorite_houses=items,
            next_page_token=(
                self._deps.page_tokens.encode(page.next_cursor, filters=filters)
                if page.next_cursor is not None
                else ""
            ),
            total_size=page.total_size,
        )

    # --- Statistics ------------------------------------------------------------------------

    async def GetLotteryStats(
        self, request: pb.GetLotteryStatsRequest, context: Context
    ) -> pb.LotteryStats:
        principal = require_principal()
        async with self._database.session(principal) as session:
            result = await stats.lottery_stats(
                session,
                start=(
                    mapping.datetime_from_proto(request.start_time)
                    if request.HasField("start_time")
                    else None
                ),
                end=(
                    mapping.datetime_from_proto(request.end_time)
                    if request.HasField("end_time")
                    else None
                ),
                bucket_size=mapping.bucket_size_from_proto(request.bucket_size),
                house_ids=[_house_id(name, field="houses") for name in request.houses],
                now=utcnow(),
            )
        return mapping.stats_to_proto(result)

    # --- Draws -----------------------------------------------------------------------------

    async def GetDraw(self, request: pb.GetDrawRequest, context: Context) -> pb.Draw:
        admin = _is_admin(current_principal())
        async with self._database.session(system=True) as session:
            draw = await draws.get_draw(session, house_id=_draw_house_id(request.name), admin=admin)
            return mapping.draw_to_proto(draw)

    async def ListDraws(
        self, request: pb.ListDrawsRequest, context: Context
    ) -> pb.ListDrawsResponse:
        admin = _is_admin(current_principal())
        states = frozenset(mapping.draw_state_from_proto(state) for state in request.states)
        async with self._database.session(system=True) as session:
            page = await draws.list_draws(
                session,
                states=states,
                admin=admin,
                page_size=request.page_size,
                page_token=request.page_token,
                tokens=self._deps.page_tokens,
            )
            return pb.ListDrawsResponse(
                draws=[mapping.draw_to_proto(draw) for draw in page.items],
                next_page_token=page.next_page_token,
                total_size=page.total_size,
            )

    async def GetDrawTranscript(
        self, request: pb.GetDrawTranscriptRequest, context: Context
    ) -> pb.DrawTranscript:
        admin = _is_admin(current_principal())
        async with self._database.session(system=True) as session:
            draw = await draws.get_draw(session, house_id=_draw_house_id(request.name), admin=admin)
            if draw.transcript_json is None:
                raise draws.draw_not_completed(draw)
            return mapping.transcript_to_proto(draw)

    async def ConductDraw(self, request: pb.ConductDrawRequest, context: Context) -> pb.Draw:
        principal = require_principal()
        draw = await self._scheduler.conduct(_draw_house_id(request.name), actor=principal)
        async with self._database.session(system=True) as session:
            current = await draws.get_draw(session, house_id=draw.house_id, admin=True)
            return mapping.draw_to_proto(current)

    # --- Purchase ------------------------------------------------------------------------------

    async def PurchaseTickets(
        self, request: pb.PurchaseTicketsRequest, context: Context
    ) -> pb.PurchaseTicketsResponse:
        principal = require_principal()
        method_id = None
        if request.payment_method:
            owner, method = parse_name(
                request.payment_method, "users", "paymentMethods", field="payment_method"
            )
            if resolve_user(owner, principal, field="payment_method") != principal.user_id:
                raise NotFound(
                    "PAYMENT_METHOD_NOT_FOUND", "the saved payment method is not the caller's"
                )
            method_id = parse_id(method, field="payment_method")
        outcome = await self._checkout.purchase(
            PurchaseRequest(
                user_id=principal.user_id,
                house_id=_house_id(request.house, field="house"),
                quantity=request.quantity,
                request_id=uuid.UUID(request.request_id),
                promotion_code=request.promotion_code,
                payment_method_id=method_id,
                provider=PROVIDER_FROM_PROTO.get(request.provider, PaymentProvider.STRIPE),
            )
        )
        async with self._database.session(system=True) as session:
            leaves = await tickets.leaf_hashes_of(session, [t.id for t in outcome.tickets])
        return pb.PurchaseTicketsResponse(
            order=order_to_proto(
                outcome.order,
                ticket_numbers=[t.number for t in outcome.tickets],
                client_secret=outcome.client_secret,
            ),
            tickets=[mapping.ticket_to_proto(t, leaf_hash=leaves[t.id]) for t in outcome.tickets],
        )
