"""The purchase path's database work (SPEC §9: PurchaseTickets through fulfilment ≥ 50 % of raw
asyncpg running the same SQL).

PurchaseTickets runs two transactions around the provider call (server/payment/checkout.py):
`orders.create_order` (buyer checks, caps, play limits, reservation, order + PENDING charge) and,
once the payment succeeded, `orders.fulfil` (order lock, tickets, entry log, audit, PAID, receipt
in the outbox). Both run here as in production, each in its own `Database.session(system=True)`
(SQLAlchemy ORM over asyncpg, application role, RLS bound per transaction).

The baseline, in the same run against the same house, is hand-written asyncpg issuing the
statements the ORM path issues — the same conditional UPDATEs, INSERTs, row locks, savepoint and
column lists, in the same two transactions, as the same role — with the same Python work between
them (birth-date decryption, ticket secrets, leaf hashes, JSON), so the ratio is the cost of the
ORM, the session and our service code's structure, not of the work itself.

Excluded from both sides: the provider calls (PaymentIntent creation, and so the
`set_payment_reference` write that depends on its answer) — network time that neither side
controls — and what PurchaseTickets does besides the database (gRPC, the events published and
the cache invalidated after commit).

BUYERS distinct eligible users (verified email, KYC approved, encrypted adult birth date) buy
QUANTITY tickets at a time, concurrently, on one house with plenty of tickets. Every purchase
serialises on the house row (reserve and issue are conditional UPDATEs on it, held to commit),
as in production. Both sides run in this one process (one core for Python, PostgreSQL on the
other), as one server worker would; more workers are a separate bar. The two sides alternate for
ROUNDS rounds after a warm-up (connections, prepared statements, SQLAlchemy's compiled cache);
the best purchases/s of each counts. Runs in a throwaway database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from server.core.crypto import Encrypted, PiiCipher
from server.core.db import Database
from server.lottery.draw.merkle import TICKET_SECRET_SIZE, leaf_hashes
from server.lottery.draw.protocol import to_ms
from server.lottery.tickets import whole_milliseconds
from server.payment.models import PaymentProvider
from server.payment.orders import PurchaseRequest, create_order, fulfil
from server.user.accounts import DEFAULT_MINIMUM_AGE
from server.user.profile import BIRTH_DATE_CONTEXT
from tests.databases import throwaway_database

BUYERS: Final = 16
QUANTITY: Final = 2
TOTAL_TICKETS: Final = 1_000_000
PRICE_MINOR: Final = 1000
ORDER_TTL: Final = datetime.timedelta(minutes=15)
WARMUP_S: Final = 1.0
SECONDS: Final = 5.0
ROUNDS: Final = 2
ROLE: Final = "amesa_app"
TARGET: Final = 0.5

Purchase = Callable[[uuid.UUID], Awaitable[None]]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _arrange(url: str, *, buyers: int) -> tuple[uuid.UUID, list[uuid.UUID], PiiCipher]:
    """One ACTIVE house on sale and `buyers` eligible users, written as the table owner."""
    cipher = PiiCipher({"bench": os.urandom(32)}, current_key_id="bench", index_key=os.urandom(32))
    connection = await asyncpg.connect(url)
    try:
        opened = _now() - datetime.timedelta(hours=1)
        house_id: uuid.UUID = await connection.fetchval(
            "INSERT INTO houses (title, country_code, city, ticket_price_minor, currency,"
            " total_tickets, max_tickets_per_order, max_tickets_per_user, sales_open_time,"
            " sales_close_time, draw_time, state, publish_time)"
            " VALUES ('Bench house', 'PT', 'Lisbon', $1, 'EUR', $2, 10, $2, $3, $4, $5,"
            " 'ACTIVE', $3) RETURNING id",
            PRICE_MINOR,
            TOTAL_TICKETS,
            opened,
            opened + datetime.timedelta(days=10),
            opened + datetime.timedelta(days=11),
        )
        users = []
        birth = "1990-05-17"
        for index in range(buyers):
            sealed = cipher.encrypt(birth, context=BIRTH_DATE_CONTEXT)
            users.append(
                await connection.fetchval(
                    "INSERT INTO users (email, given_name, family_name, email_verify_time,"
                    " kyc_status, birth_date_ciphertext, birth_date_key_id,"
                    " birth_date_blind_index) VALUES ($1, 'Bea', 'Buyer', now(), 'APPROVED',"
                    " $2, $3, $4) RETURNING id",
                    f"buyer-{index}-{uuid.uuid4().hex[:8]}@example.com",
                    sealed.ciphertext,
                    sealed.key_id,
                    cipher.blind_index(birth, context=BIRTH_DATE_CONTEXT),
                )
            )
    finally:
        await connection.close()
    return house_id, users, cipher


# --- The purchase path, as production runs it ----------------------------------------------------


def _orm(database: Database, cipher: PiiCipher, house_id: uuid.UUID) -> Purchase:
    async def purchase(user_id: uuid.UUID) -> None:
        request = PurchaseRequest(
            user_id=user_id,
            house_id=house_id,
            quantity=QUANTITY,
            request_id=uuid.uuid4(),
            promotion_code="",
            payment_method_id=None,
            provider=PaymentProvider.STRIPE,
        )
        async with database.session(system=True) as session:
            order = await create_order(
                session, request, cipher=cipher, order_ttl=ORDER_TTL, now=_now()
            )
        async with database.session(system=True) as session:
            done = await fulfil(
                session, order_id=order.id, charge_reference=f"ch_{order.id.hex}", now=_now()
            )
        assert len(done.tickets) == QUANTITY

    return purchase


# --- The baseline: the same statements through raw asyncpg ---------------------------------------

_BIND = "SELECT set_config('amesa.user_id', $1, true), set_config('amesa.bypass_rls', $2, true)"
_USER_COLUMNS = (
    "id, email, email_verify_time, pending_email, password_hash, password_change_time,"
    " given_name, family_name, birth_date_ciphertext, birth_date_key_id, birth_date_blind_index,"
    " preferred_language, accepted_terms_version, terms_accept_time, marketing_opt_in, status,"
    " status_reason, status_change_time, kyc_status, roles, last_login_time, anonymize_time,"
    " create_time, update_time, delete_time"
)
_HOUSE_COLUMNS = (
    "id, title, description, country_code, city, street, postal_code,"
    " ST_AsBinary(location) AS location, property_type, bedrooms, bathrooms, area_m2,"
    " property_value_minor, property_value_currency, features, metadata, ticket_price_minor,"
    " currency, total_tickets, min_participation, max_tickets_per_order, max_tickets_per_user,"
    " sales_open_time, sales_close_time, draw_time, state, tickets_sold, tickets_reserved,"
    " publish_time, cancel_time, cancel_reason, search_vector, create_request_id,"
    " create_request_digest, create_time, update_time, delete_time"
)
_ORDER_COLUMNS = (
    "id, user_id, house_id, request_id, quantity, unit_price_minor, subtotal_minor,"
    " discount_minor, total_minor, currency, promotion_id, promotion_code, state, provider,"
    " provider_payment_reference, payment_method_id, failure_reason, refunded_minor,"
    " expire_time, paid_time, reservation_release_time, create_time, update_time"
)
_SETTING = "SELECT value FROM system_settings WHERE key = $1"
_SELECT_USER = f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1"  # noqa: S608 - constants
_LOCK_USER_ID = "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE"
_SELECT_HOUSE = f"SELECT {_HOUSE_COLUMNS} FROM houses WHERE id = $1"  # noqa: S608 - constants
_HELD = (
    "SELECT coalesce(sum(quantity), 0) FROM orders WHERE user_id = $1 AND house_id = $2"
    " AND (state IN ('PAID', 'PARTIALLY_REFUNDED')"
    " OR state = 'PENDING_PAYMENT' AND reservation_release_time IS NULL)"
)
_EXCLUSIONS = (
    "SELECT end_time FROM self_exclusions WHERE user_id = $1 AND start_time <= $2"
    " AND (end_time IS NULL OR end_time > $2)"
)
_LIMITS = (
    "SELECT id, user_id, period, amount_minor, currency, pending_amount_minor,"
    " pending_effective_time, create_time, update_time FROM play_limits WHERE user_id = $1"
)
_RESERVE = (
    "UPDATE houses SET tickets_reserved = tickets_reserved + $1 WHERE id = $2"
    " AND delete_time IS NULL AND state = 'ACTIVE' AND sales_open_time <= now()"
    " AND sales_close_time > now() AND tickets_sold + tickets_reserved + $1 <= total_tickets"
    " RETURNING id, total_tickets - tickets_sold - tickets_reserved"
)
_INSERT_ORDER = (
    "INSERT INTO orders (id, user_id, house_id, request_id, quantity, unit_price_minor,"
    " subtotal_minor, discount_minor, total_minor, currency, promotion_id, promotion_code,"
    " provider, provider_payment_reference, payment_method_id, failure_reason, expire_time,"
    " paid_time, reservation_release_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
    " NULL, NULL, 'STRIPE', NULL, NULL, NULL, $11, NULL, NULL)"
    " RETURNING state, refunded_minor, create_time, update_time"
)
_INSERT_CHARGE = (
    "INSERT INTO transactions (user_id, order_id, kind, amount_minor, currency, provider,"
    " idempotency_key, provider_reference, provider_payment_reference, reason, failure_reason,"
    " request_id) VALUES ($1, $2, 'CHARGE', $3, $4, 'STRIPE', $5, NULL, NULL, NULL, NULL, $6)"
    " RETURNING id, state, create_time, update_time"
)
_LOCK_ORDER = f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = $1 FOR UPDATE"  # noqa: S608
_ISSUE = (
    "UPDATE houses SET tickets_sold = tickets_sold + $1, tickets_reserved = tickets_reserved - $1"
    " WHERE id = $2 AND state = 'ACTIVE' AND tickets_reserved >= $1"
    " RETURNING tickets_sold, total_tickets"
)
_INSERT_TICKETS = (
    "INSERT INTO tickets (house_id, order_id, user_id, number, secret_id, purchase_time) VALUES "  # noqa: S608
    + ", ".join(
        f"($1, $2, $3, ${4 + 2 * i}, ${5 + 2 * i}, ${4 + 2 * QUANTITY})" for i in range(QUANTITY)
    )
    + " RETURNING id, house_id, order_id, user_id, number, leaf_index, secret_id, purchase_time,"
    " state, void_time, create_time, update_time"
)
_INSERT_ENTRIES = (
    "INSERT INTO draw_entries (house_id, leaf_index, ticket_id, leaf_hash) VALUES "  # noqa: S608
    + (", ".join(f"($1, ${2 + 3 * i}, ${3 + 3 * i}, ${4 + 3 * i})" for i in range(QUANTITY)))
)
_INSERT_AUDIT = (
    "INSERT INTO audit_log (actor_kind, actor_user_id, action, resource_name, before, after,"
    " request_id, ip_address) VALUES ('SYSTEM', NULL, $1, $2, $3::jsonb, $4::jsonb, '-', NULL)"
    " RETURNING id, create_time"
)
_CHARGE_SUCCEEDED = (
    "UPDATE transactions SET state = 'SUCCEEDED', provider_reference = $1, failure_reason = NULL"
    " WHERE order_id = $2 AND kind = 'CHARGE'"
)
_ORDER_PAID = (
    "UPDATE orders SET state = 'PAID', failure_reason = NULL, paid_time = $1 WHERE id = $2"
)
_RECEIPT = (
    "INSERT INTO outbox (topic, user_id, payload, dedupe_key)"
    " VALUES ('notify.purchase_receipt', $1, $2::jsonb, $3)"
    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
)
_HOUSE_TOTAL = "SELECT total_tickets FROM houses WHERE id = $1"


def _check(condition: bool, reason: str) -> None:
    # The ORM side raises its error classes; the baseline only has to refuse as surely.
    if not condition:
        raise RuntimeError(reason)


def _age(birth: datetime.date, today: datetime.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _json_setting(raw: str | None, default: Any) -> Any:
    return default if raw is None else json.loads(raw)


async def _raw_create(
    connection: PoolConnectionProxy[asyncpg.Record],
    cipher: PiiCipher,
    house_id: uuid.UUID,
    user_id: uuid.UUID,
) -> uuid.UUID:
    now = _now()
    await connection.fetchrow(_BIND, "", "on")
    user = await connection.fetchrow(_SELECT_USER, user_id)
    _check(user is not None and user["email_verify_time"] is not None, "EMAIL_NOT_VERIFIED")
    assert user is not None
    if bool(_json_setting(await connection.fetchval(_SETTING, "purchase_requires_kyc"), True)):
        _check(user["kyc_status"] == "APPROVED", "KYC_REQUIRED")
    minimum = _json_setting(await connection.fetchval(_SETTING, "minimum_age"), None)
    if not isinstance(minimum, int) or isinstance(minimum, bool):
        minimum = DEFAULT_MINIMUM_AGE
    sealed = Encrypted(user["birth_date_ciphertext"], user["birth_date_key_id"])
    birth = datetime.date.fromisoformat(cipher.decrypt(sealed, context=BIRTH_DATE_CONTEXT))
    _check(_age(birth, now.date()) >= minimum, "UNDERAGE")
    house = await connection.fetchrow(_SELECT_HOUSE, house_id)
    _check(house is not None and house["delete_time"] is None, "HOUSE_NOT_FOUND")
    assert house is not None
    _check(house["state"] == "ACTIVE", "SALES_CLOSED")
    _check(house["sales_open_time"] <= now < house["sales_close_time"], "SALES_CLOSED")
    price, currency = house["ticket_price_minor"], house["currency"]
    await connection.fetchrow(_LOCK_USER_ID, user_id)
    _check(house["max_tickets_per_order"] >= QUANTITY, "QUANTITY_ABOVE_ORDER_CAP")
    held = await connection.fetchval(_HELD, user_id, house_id)
    _check(house["max_tickets_per_user"] - int(held) >= QUANTITY, "QUANTITY_ABOVE_USER_CAP")
    locked = await connection.fetchrow(_SELECT_USER + " FOR NO KEY UPDATE", user_id)
    _check(locked is not None and locked["status"] == "ACTIVE", "ACCOUNT_SUSPENDED")
    _check(not await connection.fetch(_EXCLUSIONS, user_id, now), "SELF_EXCLUDED")
    # No limits are set (as on the ORM side), so the spend sums are not read.
    _check(not await connection.fetch(_LIMITS, user_id), "PLAY_LIMIT_EXCEEDED")
    reserved = await connection.fetchrow(_RESERVE, QUANTITY, house_id)
    _check(reserved is not None, "SOLD_OUT")
    order_id, request_id, total = uuid.uuid4(), uuid.uuid4(), price * QUANTITY
    await connection.fetchrow(
        _INSERT_ORDER,
        order_id,
        user_id,
        house_id,
        request_id,
        QUANTITY,
        price,
        total,
        0,
        total,
        currency,
        now + ORDER_TTL,
    )
    await connection.fetchrow(
        _INSERT_CHARGE, user_id, order_id, total, currency, str(order_id), request_id
    )
    return order_id


async def _raw_fulfil(connection: PoolConnectionProxy[asyncpg.Record], order_id: uuid.UUID) -> None:
    now = _now()
    charge = f"ch_{order_id.hex}"
    await connection.fetchrow(_BIND, "", "on")
    order = await connection.fetchrow(_LOCK_ORDER, order_id)
    _check(order is not None and order["state"] == "PENDING_PAYMENT", "ORDER_NOT_PENDING")
    assert order is not None
    house_id, user_id, quantity = order["house_id"], order["user_id"], order["quantity"]
    async with connection.transaction():  # a savepoint, as fulfil's begin_nested
        issued = await connection.fetchrow(_ISSUE, quantity, house_id)
        _check(issued is not None, "SALES_CLOSED")
        assert issued is not None
        sold = issued["tickets_sold"]
        numbers = range(sold - quantity + 1, sold + 1)
        purchase_time = whole_milliseconds(now)
        time_ms = to_ms(purchase_time)
        secret_ids = [secrets.token_bytes(TICKET_SECRET_SIZE) for _ in numbers]
        pairs = [value for pair in zip(numbers, secret_ids, strict=True) for value in pair]
        rows = await connection.fetch(
            _INSERT_TICKETS, house_id, order_id, user_id, *pairs, purchase_time
        )
        tickets = sorted(rows, key=lambda row: int(row["number"]))
        leaves = leaf_hashes(house_id, ((t["number"], t["secret_id"], time_ms) for t in tickets))
        entries = [
            value
            for ticket, leaf in zip(tickets, leaves, strict=True)
            for value in (ticket["number"] - 1, ticket["id"], leaf)
        ]
        await connection.execute(_INSERT_ENTRIES, house_id, *entries)
        after = {
            "order": str(order_id),
            "user": str(user_id),
            "first_number": numbers[0],
            "last_number": numbers[-1],
            "tickets_sold": sold,
        }
        await connection.fetchrow(
            _INSERT_AUDIT,
            "lottery.tickets.issue",
            f"houses/{house_id}",
            "null",
            json.dumps(after),
        )
    await connection.execute(_CHARGE_SUCCEEDED, charge, order_id)
    await connection.execute(_ORDER_PAID, now, order_id)
    receipt = {
        "order": f"users/{user_id}/orders/{order_id}",
        "quantity": quantity,
        "first_number": numbers[0],
        "last_number": numbers[-1],
        "total": f"{order['total_minor'] / 100:.2f} {order['currency']}",
    }
    await connection.fetchval(_RECEIPT, user_id, json.dumps(receipt), f"receipt:{order_id}")
    await connection.fetchrow(
        _INSERT_AUDIT,
        "payment.order.fulfil",
        f"users/{user_id}/orders/{order_id}",
        json.dumps({"state": order["state"]}),
        json.dumps({"charge": charge, "tickets": list(numbers)}),
    )
    await connection.fetchrow(_LOCK_ORDER, order_id)
    await connection.fetchval(_HOUSE_TOTAL, house_id)


def _raw(pool: asyncpg.Pool, cipher: PiiCipher, house_id: uuid.UUID) -> Purchase:
    async def purchase(user_id: uuid.UUID) -> None:
        async with pool.acquire() as connection, connection.transaction():
            order_id = await _raw_create(connection, cipher, house_id, user_id)
        async with pool.acquire() as connection, connection.transaction():
            await _raw_fulfil(connection, order_id)

    return purchase


async def _set_role(connection: asyncpg.Connection) -> None:
    await connection.execute(f'SET ROLE "{ROLE}"')


# --- Driving -------------------------------------------------------------------------------------


async def _rate(purchase: Purchase, users: list[uuid.UUID], seconds: float) -> float:
    """Purchases per second with one concurrent buyer per user, for `seconds`."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def buyer(user_id: uuid.UUID) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await purchase(user_id)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(buyer(user_id) for user_id in users))
    return count / (time.perf_counter() - started)


async def _measure() -> tuple[float, float]:
    async with throwaway_database("bench_purchase", migrated=True) as url:
        house_id, users, cipher = await _arrange(url, buyers=BUYERS)
        database = Database(url, role=ROLE, pool_size=BUYERS)
        pool = await asyncpg.create_pool(url, min_size=BUYERS, max_size=BUYERS, init=_set_role)
        try:
            sides = {"orm": _orm(database, cipher, house_id), "raw": _raw(pool, cipher, house_id)}
            best = dict.fromkeys(sides, 0.0)
            for purchase in sides.values():
                await _rate(purchase, users, WARMUP_S)  # connections, statement caches
            for _ in range(ROUNDS):
                for name, purchase in sides.items():
                    best[name] = max(best[name], await _rate(purchase, users, SECONDS))
        finally:
            await pool.close()
            await database.close()
    return best["orm"], best["raw"]


def run() -> str:
    orm, raw = asyncio.run(_measure())
    return (
        f"purchase path (create_order + fulfil): {orm:.0f} purchases/s vs raw asyncpg "
        f"{raw:.0f} purchases/s → ratio {orm / raw:.2f} (target ≥ {TARGET:.2f}; "
        f"{BUYERS} concurrent buyers of {QUANTITY} tickets on one house, provider calls "
        f"excluded; best of {ROUNDS} rounds of {SECONDS:.0f} s)"
    )
