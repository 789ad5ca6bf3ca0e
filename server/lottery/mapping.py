"""Rows ↔ LotteryService messages, field by field."""

from __future__ import annotations

import datetime
import json
from typing import Any

from geoalchemy2 import WKBElement
from geoalchemy2.shape import to_shape
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.type.v1 import money_pb2
from server.core.money import money, optional_money
from server.lottery import catalogue, entrylog, stats
from server.lottery.models import (
    Draw,
    DrawState,
    Favorite,
    House,
    HouseImage,
    HouseState,
    PropertyType,
    SignedTreeHead,
    Ticket,
    TicketState,
)

_STATE_TO_PROTO = {
    HouseState.DRAFT: pb.HOUSE_STATE_DRAFT,
    HouseState.UPCOMING: pb.HOUSE_STATE_UPCOMING,
    HouseState.ACTIVE: pb.HOUSE_STATE_ACTIVE,
    HouseState.SOLD_OUT: pb.HOUSE_STATE_SOLD_OUT,
    HouseState.CLOSED: pb.HOUSE_STATE_CLOSED,
    HouseState.DRAWN: pb.HOUSE_STATE_DRAWN,
    HouseState.CANCELLED: pb.HOUSE_STATE_CANCELLED,
}
_STATE_FROM_PROTO = {value: key for key, value in _STATE_TO_PROTO.items()}

_PROPERTY_TYPE_TO_PROTO = {
    PropertyType.HOUSE: pb.PROPERTY_TYPE_HOUSE,
    PropertyType.APARTMENT: pb.PROPERTY_TYPE_APARTMENT,
    PropertyType.VILLA: pb.PROPERTY_TYPE_VILLA,
    PropertyType.TOWNHOUSE: pb.PROPERTY_TYPE_TOWNHOUSE,
    PropertyType.PENTHOUSE: pb.PROPERTY_TYPE_PENTHOUSE,
    PropertyType.COTTAGE: pb.PROPERTY_TYPE_COTTAGE,
    PropertyType.OTHER: pb.PROPERTY_TYPE_OTHER,
}
_PROPERTY_TYPE_FROM_PROTO = {value: key for key, value in _PROPERTY_TYPE_TO_PROTO.items()}


def house_name(house_id: object) -> str:
    return f"houses/{house_id}"


def image_name(image: HouseImage) -> str:
    return f"houses/{image.house_id}/images/{image.id}"


def state_to_proto(state: HouseState) -> pb.HouseState.ValueType:
    return _STATE_TO_PROTO[state]


def state_from_proto(state: pb.HouseState.ValueType) -> HouseState:
    return _STATE_FROM_PROTO[state]


def property_type_to_proto(value: PropertyType | None) -> pb.PropertyType.ValueType:
    return pb.PROPERTY_TYPE_UNSPECIFIED if value is None else _PROPERTY_TYPE_TO_PROTO[value]


def property_type_from_proto(value: pb.PropertyType.ValueType) -> PropertyType | None:
    return _PROPERTY_TYPE_FROM_PROTO.get(value)


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def datetime_from_proto(message: timestamp_pb2.Timestamp) -> datetime.datetime:
    return message.ToDatetime(tzinfo=datetime.UTC)


def set_location(message: pb.House, location: WKBElement | None) -> None:
    if location is None:
        return
    point = to_shape(location)
    message.location.latitude = point.y
    message.location.longitude = point.x


def location_wkt(message: pb.House) -> str:
    """EWKT of the house's LatLng for the geography column (longitude first, as WKT wants)."""
    return f"SRID=4326;POINT({message.location.longitude!r} {message.location.latitude!r})"


def metadata_to_proto(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(value, message)
    return message


def metadata_from_proto(message: struct_pb2.Struct) -> dict[str, Any]:
    return dict(json_format.MessageToDict(message))


def image_to_proto(image: HouseImage, *, media_base_url: str) -> pb.HouseImage:
    uri = image.source_uri or f"{media_base_url}{image.storage_name}"
    return pb.HouseImage(
        name=image_name(image),
        uri=uri,
        alt_text=image.alt_text,
        position=image.position,
        content_type=image.content_type or "",
        width_px=image.width_px,
        height_px=image.height_px,
        size_bytes=image.size_bytes,
        create_time=timestamp(image.create_time),
    )


def lottery_terms_to_proto(house: House) -> pb.LotteryTerms:
    return pb.LotteryTerms(
        ticket_price=optional_money(house.ticket_price_minor, house.currency),
        total_tickets=house.total_tickets,
        min_participation=house.min_participation,
        max_tickets_per_order=house.max_tickets_per_order,
        max_tickets_per_user=house.max_tickets_per_user,
        sales_open_time=timestamp(house.sales_open_time),
        sales_close_time=timestamp(house.sales_close_time),
        draw_time=timestamp(house.draw_time),
    )


def house_to_proto(house: House, *, images: list[HouseImage], media_base_url: str) -> pb.House:
    message = pb.House(
        name=house_name(house.id),
        title=house.title,
        description=house.description,
        country_code=house.country_code or "",
        city=house.city or "",
        street=house.street or "",
        postal_code=house.postal_code or "",
        property_type=property_type_to_proto(house.property_type),
        bedrooms=house.bedrooms,
        bathrooms=house.bathrooms,
        area_m2=house.area_m2,
        property_value=optional_money(house.property_value_minor, house.property_value_currency),
        features=list(house.features),
        metadata=metadata_to_proto(house.metadata_),
        images=[image_to_proto(image, media_base_url=media_base_url) for image in images],
        lottery_terms=lottery_terms_to_proto(house),
        state=state_to_proto(house.state),
        tickets_sold=house.tickets_sold,
        tickets_remaining=max(house.total_tickets - house.tickets_sold - house.tickets_reserved, 0),
        cancel_reason=house.cancel_reason or "",
        publish_time=timestamp(house.publish_time),
        cancel_time=timestamp(house.cancel_time),
        create_time=timestamp(house.create_time),
        update_time=timestamp(house.update_time),
        delete_time=timestamp(house.delete_time),
    )
    set_location(message, house.location)
    return message


def favorite_to_proto(favorite: Favorite, house: pb.House) -> pb.FavoriteHouse:
    return pb.FavoriteHouse(
        name=f"users/{favorite.user_id}/favoriteHouses/{favorite.house_id}",
        house=house,
        create_time=timestamp(favorite.create_time),
    )


# Writable House fields, as update_mask paths. `lottery_terms` alone means all its sub-fields.
LISTING_PATHS = (
    "title",
    "description",
    "country_code",
    "city",
    "street",
    "postal_code",
    "location",
    "property_type",
    "bedrooms",
    "bathrooms",
    "area_m2",
    "property_value",
    "features",
    "metadata",
)
TERMS_PATHS = tuple(
    f"lottery_terms.{name}"
    for name in (
        "ticket_price",
        "total_tickets",
        "min_participation",
        "max_tickets_per_order",
        "max_tickets_per_user",
        "sales_open_time",
        "sales_close_time",
        "draw_time",
    )
)
OUTPUT_ONLY_PATHS = frozenset(
    {
        "name",
        "images",
        "state",
        "tickets_sold",
        "tickets_remaining",
        "cancel_reason",
        "publish_time",
        "cancel_time",
        "create_time",
        "update_time",
        "delete_time",
    }
)


def _optional_time(message: pb.LotteryTerms, field: str) -> datetime.datetime | None:
    if not message.HasField(field):  # type: ignore[arg-type]
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    return datetime_from_proto(value)


def house_columns(message: pb.House, paths: frozenset[str]) -> dict[str, Any]:  # noqa: PLR0912
    """Column values of the `paths` (from LISTING_PATHS and TERMS_PATHS) of a House message;
    an unset field clears its column."""
    terms = message.lottery_terms
    values: dict[str, Any] = {}
    for path in paths:
        if path == "title":
            values["title"] = message.title
        elif path == "description":
            values["description"] = message.description
        elif path == "country_code":
            values["country_code"] = message.country_code or None
        elif path == "city":
            values["city"] = message.city or None
        elif path == "street":
            values["street"] = message.street or None
        elif path == "postal_code":
            values["postal_code"] = message.postal_code or None
        elif path == "location":
            values["location"] = location_wkt(message) if message.HasField("location") else None
        elif path == "property_type":
            values["property_type"] = property_type_from_proto(message.property_type)
        elif path == "bedrooms":
            values["bedrooms"] = message.bedrooms
        elif path == "bathrooms":
            values["bathrooms"] = message.bathrooms
        elif path == "area_m2":
            values["area_m2"] = message.area_m2
        elif path == "property_value":
            has_value = message.HasField("property_value")
            values["property_value_minor"] = (
                message.property_value.amount_minor if has_value else None
            )
            values["property_value_currency"] = (
                message.property_value.currency_code if has_value else None
            )
        elif path == "features":
            values["features"] = list(message.features)
        elif path == "metadata":
            values["metadata_"] = metadata_from_proto(message.metadata)
        elif path == "lottery_terms.ticket_price":
            has_price = terms.HasField("ticket_price")
            values["ticket_price_minor"] = terms.ticket_price.amount_minor if has_price else None
            values["currency"] = terms.ticket_price.currency_code if has_price else None
        elif path == "lottery_terms.total_tickets":
            values["total_tickets"] = terms.total_tickets
        elif path == "lottery_terms.min_participation":
            values["min_participation"] = terms.min_participation
        elif path == "lottery_terms.max_tickets_per_order":
            values["max_tickets_per_order"] = terms.max_tickets_per_order
        elif path == "lottery_terms.max_tickets_per_user":
            values["max_tickets_per_user"] = terms.max_tickets_per_user
        elif path in (
            "lottery_terms.sales_open_time",
            "lottery_terms.sales_close_time",
            "lottery_terms.draw_time",
        ):
            field = path.removeprefix("lottery_terms.")
            values[field] = _optional_time(terms, field)
        else:
            raise AssertionError(path)
    return values


def _money_filter(message: money_pb2.Money) -> catalogue.Money:
    return catalogue.Money(currency=message.currency_code, amount_minor=message.amount_minor)


def house_filter_from_proto(request: pb.ListHousesRequest) -> catalogue.HouseFilter:
    return catalogue.HouseFilter(
        states=[state_from_proto(state) for state in request.states],
        min_ticket_price=(
            _money_filter(request.min_ticket_price)
            if request.HasField("min_ticket_price")
            else None
        ),
        max_ticket_price=(
            _money_filter(request.max_ticket_price)
            if request.HasField("max_ticket_price")
            else None
        ),
        min_property_value=(
            _money_filter(request.min_property_value)
            if request.HasField("min_property_value")
            else None
        ),
        max_property_value=(
            _money_filter(request.max_property_value)
            if request.HasField("max_property_value")
            else None
        ),
        country_code=request.country_code,
        city=request.city,
        property_types=[
            kind
            for kind in (property_type_from_proto(value) for value in request.property_types)
            if kind is not None
        ],
        min_bedrooms=request.min_bedrooms,
        query=request.query.strip(),
        near=(
            catalogue.Near(
                latitude=request.near.latitude,
                longitude=request.near.longitude,
                radius_km=request.near.radius_km,
            )
            if request.HasField("near")
            else None
        ),
    )


def list_filters_digest_input(request: pb.ListHousesRequest, *, admin: bool) -> dict[str, Any]:
    """What a ListHouses page token is bound to: every field but the paging ones, and whether
    the caller is an administrator (who sees other rows)."""
    filters = pb.ListHousesRequest()
    filters.CopyFrom(request)
    filters.ClearField("page_token")
    filters.ClearField("page_size")
    return {
        "request": filters.SerializeToString(deterministic=True).hex(),
        "admin": admin,
    }


_BUCKET_SIZE_FROM_PROTO = {
    pb.STATS_BUCKET_SIZE_UNSPECIFIED: stats.BucketSize.DAY,
    pb.STATS_BUCKET_SIZE_HOUR: stats.BucketSize.HOUR,
    pb.STATS_BUCKET_SIZE_DAY: stats.BucketSize.DAY,
    pb.STATS_BUCKET_SIZE_WEEK: stats.BucketSize.WEEK,
    pb.STATS_BUCKET_SIZE_MONTH: stats.BucketSize.MONTH,
}
_BUCKET_SIZE_TO_PROTO = {
    stats.BucketSize.HOUR: pb.STATS_BUCKET_SIZE_HOUR,
    stats.BucketSize.DAY: pb.STATS_BUCKET_SIZE_DAY,
    stats.BucketSize.WEEK: pb.STATS_BUCKET_SIZE_WEEK,
    stats.BucketSize.MONTH: pb.STATS_BUCKET_SIZE_MONTH,
}


def bucket_size_from_proto(value: pb.StatsBucketSize.ValueType) -> stats.BucketSize:
    return _BUCKET_SIZE_FROM_PROTO[value]


def _amounts(amounts: dict[str, int]) -> list[money_pb2.Money]:
    return [money(amount, currency) for currency, amount in sorted(amounts.items())]


def participation_to_proto(row: stats.Participation) -> pb.HouseParticipation:
    house = row.house
    return pb.HouseParticipation(
        house=house_name(house.id),
        title=house.title,
        state=state_to_proto(house.state),
        total_tickets=house.total_tickets,
        tickets_sold=house.tickets_sold,
        sold_ratio=house.tickets_sold / house.total_tickets if house.total_tickets else 0.0,
        min_participation=house.min_participation,
        min_participation_reached=house.tickets_sold >= house.min_participation,
        unique_buyers=row.unique_buyers,
        tickets_sold_in_interval=row.tickets_sold_in_interval,
        gross_sales=optional_money(row.gross_sales_minor, house.currency),
    )


def stats_to_proto(result: stats.Stats) -> pb.LotteryStats:
    return pb.LotteryStats(
        start_time=timestamp(result.start),
        end_time=timestamp(result.end),
        bucket_size=_BUCKET_SIZE_TO_PROTO[result.bucket_size],
        tickets_sold=result.tickets_sold,
        unique_buyers=result.unique_buyers,
        paid_orders=result.paid_orders,
        gross_sales=_amounts(result.gross_sales),
        houses_by_state=[
            pb.HouseStateCount(state=state_to_proto(state), count=count)
            for state, count in sorted(
                result.houses_by_state.items(), key=lambda item: state_to_proto(item[0])
            )
        ],
        sales=[
            pb.SalesBucket(
                start_time=timestamp(bucket.start),
                tickets_sold=bucket.tickets_sold,
                paid_orders=bucket.paid_orders,
                unique_buyers=bucket.unique_buyers,
                gross_sales=_amounts(bucket.gross_sales),
            )
            for bucket in result.buckets
        ],
        houses=[participation_to_proto(row) for row in result.houses],
    )


# --- Tickets -----------------------------------------------------------------------------------

_TICKET_STATE_TO_PROTO = {
    TicketState.ACTIVE: pb.TICKET_STATE_ACTIVE,
    TicketState.WON: pb.TICKET_STATE_WON,
    TicketState.RESERVE: pb.TICKET_STATE_RESERVE,
    TicketState.NOT_WON: pb.TICKET_STATE_NOT_WON,
    TicketState.VOIDED: pb.TICKET_STATE_VOIDED,
}
_TICKET_STATE_FROM_PROTO = {value: key for key, value in _TICKET_STATE_TO_PROTO.items()}


def ticket_name(ticket: Ticket) -> str:
    return f"users/{ticket.user_id}/tickets/{ticket.id}"


def ticket_state_from_proto(state: pb.TicketState.ValueType) -> TicketState:
    return _TICKET_STATE_FROM_PROTO[state]


def ticket_to_proto(ticket: Ticket, *, leaf_hash: bytes) -> pb.Ticket:
    return pb.Ticket(
        name=ticket_name(ticket),
        house=house_name(ticket.house_id),
        number=ticket.number,
        leaf_index=ticket.leaf_index,
        purchase_time=timestamp(ticket.purchase_time),
        order=f"users/{ticket.user_id}/orders/{ticket.order_id}",
        secret_id=ticket.secret_id.hex(),
        leaf_hash=leaf_hash.hex(),
        state=_TICKET_STATE_TO_PROTO[ticket.state],
    )


def tree_head_to_proto(head: SignedTreeHead) -> pb.SignedTreeHead:
    return pb.SignedTreeHead(
        tree_size=head.tree_size,
        root=head.root.hex(),
        timestamp=timestamp(head.timestamp),
        signature=head.signature.hex(),
    )


def inclusion_proof_to_proto(proof: entrylog.InclusionProof) -> pb.TicketInclusionProof:
    return pb.TicketInclusionProof(
        ticket=ticket_name(proof.ticket),
        house=house_name(proof.ticket.house_id),
        leaf_index=proof.ticket.leaf_index,
        leaf_hash=proof.leaf_hash.hex(),
        audit_path=[sibling.hex() for sibling in proof.audit_path],
        tree_head=tree_head_to_proto(proof.tree_head),
        transparency_public_key=proof.tree_head.public_key.hex(),
    )


# --- Draws ---------------------------------------------------------------------------------------

_DRAW_STATE_TO_PROTO = {
    DrawState.SCHEDULED: pb.DRAW_STATE_SCHEDULED,
    DrawState.FROZEN: pb.DRAW_STATE_FROZEN,
    DrawState.COMPLETED: pb.DRAW_STATE_COMPLETED,
    DrawState.CANCELLED: pb.DRAW_STATE_CANCELLED,
}
_DRAW_STATE_FROM_PROTO = {value: key for key, value in _DRAW_STATE_TO_PROTO.items()}


def draw_state_from_proto(state: pb.DrawState.ValueType) -> DrawState:
    return _DRAW_STATE_FROM_PROTO[state]


def draw_name(house_id: object) -> str:
    return f"{house_name(house_id)}/draw"


def _from_ms(milliseconds: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromMilliseconds(milliseconds)
    return message


def manifest_to_proto(manifest: dict[str, Any]) -> pb.DrawManifest:
    genesis = timestamp_pb2.Timestamp(seconds=int(manifest["beacon_genesis_time_s"]))
    return pb.DrawManifest(
        version=str(manifest["version"]),
        house_id=str(manifest["house_id"]),
        total_tickets=int(manifest["total_tickets"]),
        sales_close_time=_from_ms(int(manifest["sales_close_time_ms"])),
        beacon_chain_hash=str(manifest["beacon_chain_hash"]),
        beacon_round=int(manifest["beacon_round"]),
        beacon_public_key=str(manifest["beacon_public_key"]),
        beacon_period=duration_pb2.Duration(seconds=int(manifest["beacon_period_s"])),
        beacon_genesis_time=genesis,
        fallback=str(manifest["fallback"]),
        published_time=_from_ms(int(manifest["published_time_ms"])),
    )


def draw_winners_to_proto(draw: Draw) -> list[pb.DrawWinner]:
    return [
        pb.DrawWinner(
            rank=int(winner["rank"]),
            index=int(winner["index"]),
            ticket_number=int(winner["ticket_number"]),
        )
        for winner in draw.winners or []
    ]


def draw_to_proto(draw: Draw) -> pb.Draw:
    """Every field the draw has reached; `final_tree_head` must be loaded."""
    message = pb.Draw(
        name=draw_name(draw.house_id),
        house=house_name(draw.house_id),
        state=_DRAW_STATE_TO_PROTO[draw.state],
        algorithm_version=draw.algorithm_version,
        manifest=manifest_to_proto(json.loads(draw.manifest_json)),
        manifest_json=draw.manifest_json,
        manifest_signature=draw.manifest_signature.hex(),
        transparency_public_key=draw.transparency_public_key.hex(),
        beacon_time=timestamp(draw.beacon_time),
        reserves_requested=draw.reserves_requested,
        fallback_applied=draw.fallback_applied,
        freeze_time=timestamp(draw.freeze_time),
        conduct_time=timestamp(draw.conduct_time),
        create_time=timestamp(draw.create_time),
        update_time=timestamp(draw.update_time),
    )
    if draw.final_tree_head is not None:
        message.final_tree_head.CopyFrom(tree_head_to_proto(draw.final_tree_head))
    if draw.beacon_signature is not None and draw.beacon_randomness is not None:
        message.beacon.CopyFrom(
            pb.DrawBeacon(
                chain_hash=draw.beacon_chain_hash,
                round=draw.beacon_round,
                signature=draw.beacon_signature.hex(),
                randomness=draw.beacon_randomness.hex(),
            )
        )
    if draw.state is DrawState.COMPLETED and draw.seed is not None:
        message.seed = draw.seed.hex()
        message.words.extend(
            pb.DrawWord(k=int(w["k"]), word=str(w["word"]), accepted=bool(w["accepted"]))
            for w in draw.words or []
        )
        message.winners.extend(draw_winners_to_proto(draw))
    return message


def transcript_to_proto(draw: Draw) -> pb.DrawTranscript:
    """The stored transcript of a COMPLETED draw, byte for byte, with its display fields."""
    assert draw.transcript_json is not None
    assert draw.transcript_sha256 is not None
    assert draw.final_tree_head is not None
    assert draw.seed is not None
    return pb.DrawTranscript(
        name=f"{draw_name(draw.house_id)}/transcript",
        draw=draw_name(draw.house_id),
        version=draw.algorithm_version,
        house_id=str(draw.house_id),
        tree_size=draw.final_tree_head.tree_size,
        root=draw.final_tree_head.root.hex(),
        beacon_round=draw.beacon_round,
        seed=draw.seed.hex(),
        winners=draw_winners_to_proto(draw),
        transcript_sha256=draw.transcript_sha256.hex(),
        transcript_json=draw.transcript_json,
    )
