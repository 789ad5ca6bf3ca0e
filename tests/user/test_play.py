"""Responsible play: GetPlayLimits, UpdatePlayLimits, SelfExclude, and check_purchase_allowed
(the purchase path's gate)."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text

from amesa.type.v1 import money_pb2
from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from server.core.errors import FailedPrecondition, ResourceExhausted
from server.user.play import check_purchase_allowed
from tests.user.conftest import Account, Accounts, rpc_failure


def eur(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount_minor=amount)


def limits_request(
    name: str = "users/me/playLimits", **limits: money_pb2.Money | None
) -> pb.UpdatePlayLimitsRequest:
    values = {field: value for field, value in limits.items() if value is not None}
    return pb.UpdatePlayLimitsRequest(
        play_limits=pb.PlayLimits(name=name, **values),  # type: ignore[arg-type]
        update_mask=field_mask_pb2.FieldMask(paths=list(limits)),
    )


async def paid_order(
    accounts: Accounts, user_id: uuid.UUID, amount: int, *, hours_ago: float
) -> None:
    await accounts.execute(
        "WITH house AS (INSERT INTO houses (title) VALUES ('Test house') RETURNING id)"
        " INSERT INTO orders (user_id, house_id, request_id, quantity, unit_price_minor,"
        " subtotal_minor, total_minor, currency, state, provider, expire_time, paid_time,"
        " reservation_release_time)"
        " SELECT :u, house.id, gen_random_uuid(), 1, :a, :a, :a, 'EUR', 'PAID', 'STRIPE', now(),"
        " now() - make_interval(secs => :s), now() - make_interval(secs => :s) FROM house",
        u=user_id,
        a=amount,
        s=hours_ago * 3600,
    )


async def check(app: App, user_id: uuid.UUID, amount: int) -> None:
    async with app.database.session(system=True) as session:
        await check_purchase_allowed(
            session,
            user_id=user_id,
            amount_minor=amount,
            currency="EUR",
            now=datetime.datetime.now(datetime.UTC),
        )


async def test_no_limits_by_default_and_spending_per_window(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await paid_order(accounts, alice.id, 1000, hours_ago=1)
    await paid_order(accounts, alice.id, 2000, hours_ago=48)
    await paid_order(accounts, alice.id, 4000, hours_ago=24 * 10)
    await paid_order(accounts, alice.id, 8000, hours_ago=24 * 40)
    limits = await stub.GetPlayLimits(
        pb.GetPlayLimitsRequest(name="users/me/playLimits"), metadata=alice.metadata
    )
    assert limits.name == f"{alice.name}/playLimits"
    assert not limits.HasField("daily_limit")
    assert not limits.HasField("monthly_limit")
    assert (limits.daily_spent, limits.weekly_spent, limits.monthly_spent) == (
        eur(1000),
        eur(3000),
        eur(7000),
    )
    assert not limits.HasField("update_time")


async def test_setting_and_lowering_apply_at_once(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    limits = await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(5000), weekly_limit=eur(10000), monthly_limit=eur(20000)),
        metadata=alice.metadata,
    )
    assert (limits.daily_limit, limits.weekly_limit, limits.monthly_limit) == (
        eur(5000),
        eur(10000),
        eur(20000),
    )
    lowered = await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(100)), metadata=alice.metadata
    )
    assert lowered.daily_limit == eur(100)
    assert not lowered.HasField("pending_daily_limit")


async def test_raising_or_removing_waits_24_hours(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(1000), weekly_limit=eur(5000)), metadata=alice.metadata
    )
    before = datetime.datetime.now(datetime.UTC)
    raised = await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(2000), weekly_limit=None), metadata=alice.metadata
    )
    assert raised.daily_limit == eur(1000)  # still in force
    assert raised.pending_daily_limit.limit == eur(2000)
    effective = raised.pending_daily_limit.effective_time.ToDatetime(tzinfo=datetime.UTC)
    assert (
        datetime.timedelta(hours=23, minutes=59)
        < effective - before
        < datetime.timedelta(hours=24, minutes=1)
    )
    assert raised.weekly_limit == eur(5000)
    assert raised.HasField("pending_weekly_limit")
    assert not raised.pending_weekly_limit.HasField("limit")  # a removal
    # Lowering again cancels the pending raise.
    lowered = await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(900)), metadata=alice.metadata
    )
    assert lowered.daily_limit == eur(900)
    assert not lowered.HasField("pending_daily_limit")


async def test_a_due_pending_raise_is_in_force(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await stub.UpdatePlayLimits(limits_request(daily_limit=eur(1000)), metadata=alice.metadata)
    await stub.UpdatePlayLimits(limits_request(daily_limit=eur(3000)), metadata=alice.metadata)
    await accounts.execute(
        "UPDATE play_limits SET pending_effective_time = now() - interval '1 minute'"
        " WHERE user_id = :u",
        u=alice.id,
    )
    limits = await stub.GetPlayLimits(
        pb.GetPlayLimitsRequest(name="users/me/playLimits"), metadata=alice.metadata
    )
    assert limits.daily_limit == eur(3000)
    assert not limits.HasField("pending_daily_limit")


async def test_limits_must_be_ordered(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(
        stub.UpdatePlayLimits(
            limits_request(daily_limit=eur(5000), weekly_limit=eur(1000)), metadata=alice.metadata
        )
    )
    assert (failed.code, failed.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "LIMITS_NOT_ORDERED")
    await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(1000), weekly_limit=eur(2000)), metadata=alice.metadata
    )
    # A raise of daily above weekly would break the order once it takes effect.
    failed = await rpc_failure(
        stub.UpdatePlayLimits(limits_request(daily_limit=eur(3000)), metadata=alice.metadata)
    )
    assert failed.reason == "LIMITS_NOT_ORDERED"


async def test_other_currency_is_currency_not_supported(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    usd = money_pb2.Money(currency_code="USD", amount_minor=100)
    failed = await rpc_failure(
        stub.UpdatePlayLimits(limits_request(daily_limit=usd), metadata=alice.metadata)
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURRENCY_NOT_SUPPORTED",
    )
    assert failed.error_info.metadata["currency_code"] == "USD"


async def test_another_users_limits_are_out_of_reach(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    for user in (bob.name, f"users/{uuid.uuid4()}"):
        name = f"{user}/playLimits"
        for call in (
            stub.GetPlayLimits(pb.GetPlayLimitsRequest(name=name), metadata=alice.metadata),
            stub.UpdatePlayLimits(
                limits_request(name, daily_limit=eur(1)), metadata=alice.metadata
            ),
            stub.SelfExclude(
                pb.SelfExcludeRequest(name=user, permanent=True), metadata=alice.metadata
            ),
        ):
            failed = await rpc_failure(call)
            assert (failed.code, failed.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")


async def test_admin_changes_are_audited(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    await stub.UpdatePlayLimits(
        limits_request(f"{bob.name}/playLimits", daily_limit=eur(700)), metadata=admin.metadata
    )
    audited = await accounts.fetch(
        "SELECT after->>'daily_limit' FROM audit_log WHERE resource_name = :n",
        n=f"{bob.name}/playLimits",
    )
    assert audited == "700"


async def test_purchase_within_limits_is_allowed_and_above_is_play_limit_exceeded(
    app: App, stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await check(app, alice.id, 10**9)  # no limits
    await stub.UpdatePlayLimits(
        limits_request(daily_limit=eur(5000), monthly_limit=eur(8000)), metadata=alice.metadata
    )
    await paid_order(accounts, alice.id, 3000, hours_ago=2)
    await paid_order(accounts, alice.id, 4000, hours_ago=30)  # outside 24 h, inside 30 d
    await check(app, alice.id, 1000)
    with pytest.raises(ResourceExhausted) as daily:
        await check(app, alice.id, 2001)
    assert daily.value.reason == "PLAY_LIMIT_EXCEEDED"
    assert daily.value.metadata["period"] in {"DAILY", "MONTHLY"}
    with pytest.raises(ResourceExhausted) as monthly:
        await check(app, alice.id, 1001)
    assert monthly.value.metadata == {
        "period": "MONTHLY",
        "remaining_minor": "1000",
        "currency_code": "EUR",
    }


async def test_suspended_account_cannot_buy(app: App, alice: Account, accounts: Accounts) -> None:
    await accounts.execute(
        "UPDATE users SET status = 'SUSPENDED', status_reason = 'fraud' WHERE id = :u", u=alice.id
    )
    with pytest.raises(FailedPrecondition) as raised:
        await check(app, alice.id, 1)
    assert raised.value.reason == "ACCOUNT_SUSPENDED"


async def test_self_exclusion_is_immediate_revokes_sessions_and_stops_marketing(
    app: App, stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await accounts.execute("UPDATE users SET marketing_opt_in = true WHERE id = :u", u=alice.id)
    await accounts.add_session(alice.id)
    await check(app, alice.id, 100)
    before = datetime.datetime.now(datetime.UTC)
    response = await stub.SelfExclude(
        pb.SelfExcludeRequest(name="users/me", months=6), metadata=alice.metadata
    )
    assert not response.permanent
    end = response.end_time.ToDatetime(tzinfo=datetime.UTC)
    assert datetime.timedelta(days=180) <= end - before <= datetime.timedelta(days=185)
    with pytest.raises(FailedPrecondition) as raised:
        await check(app, alice.id, 1)
    assert raised.value.reason == "SELF_EXCLUDED"
    assert raised.value.metadata["until"] == end.isoformat()
    assert await accounts.live_sessions(alice.id) == 0
    assert await accounts.revoke_reasons(alice.id) == {"SELF_EXCLUDED"}
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.status == pb.USER_STATUS_SELF_EXCLUDED
    assert user.self_exclusion_end_time == response.end_time
    assert not user.marketing_opt_in


async def test_self_exclusion_extends_but_never_shortens(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await stub.SelfExclude(
        pb.SelfExcludeRequest(name="users/me", months=12), metadata=alice.metadata
    )
    failed = await rpc_failure(
        stub.SelfExclude(pb.SelfExcludeRequest(name="users/me", months=6), metadata=alice.metadata)
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SELF_EXCLUSION_WOULD_SHORTEN",
    )
    assert "until" in failed.error_info.metadata
    longer = await stub.SelfExclude(
        pb.SelfExcludeRequest(name="users/me", months=24), metadata=alice.metadata
    )
    assert not longer.permanent
    forever = await stub.SelfExclude(
        pb.SelfExcludeRequest(name="users/me", permanent=True), metadata=alice.metadata
    )
    assert forever.permanent
    assert not forever.HasField("end_time")
    failed = await rpc_failure(
        stub.SelfExclude(pb.SelfExcludeRequest(name="users/me", months=60), metadata=alice.metadata)
    )
    assert failed.reason == "SELF_EXCLUSION_WOULD_SHORTEN"
    assert "until" not in failed.error_info.metadata
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.status == pb.USER_STATUS_SELF_EXCLUDED
    assert not user.HasField("self_exclusion_end_time")


async def test_self_exclusion_period_out_of_range_is_invalid_argument(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for months in (5, 61):
        failed = await rpc_failure(
            stub.SelfExclude(
                pb.SelfExcludeRequest(name="users/me", months=months), metadata=alice.metadata
            )
        )
        assert failed.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_closed_account_is_account_deleted(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, accounts: Accounts
) -> None:
    closed = await accounts.create()
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=closed.metadata)
    for call in (
        stub.SelfExclude(
            pb.SelfExcludeRequest(name="users/me", months=6), metadata=closed.metadata
        ),
        stub.UpdatePlayLimits(limits_request(daily_limit=eur(1)), metadata=closed.metadata),
    ):
        failed = await rpc_failure(call)
        assert (failed.code, failed.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ACCOUNT_DELETED",
        )


async def test_concurrent_purchases_cannot_both_pass_one_limit(
    app: App, stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    """Each buyer checks then inserts its unpaid order in one transaction, as PurchaseTickets
    does: the row lock and the count of unpaid orders let only one of them through."""
    await stub.UpdatePlayLimits(limits_request(daily_limit=eur(1000)), metadata=alice.metadata)
    house = await accounts.fetch_committed("INSERT INTO houses (title) VALUES ('H') RETURNING id")

    async def buy() -> str:
        try:
            async with app.database.session(system=True) as session:
                await check_purchase_allowed(
                    session,
                    user_id=alice.id,
                    amount_minor=600,
                    currency="EUR",
                    now=datetime.datetime.now(datetime.UTC),
                )
                await asyncio.sleep(0.05)  # widen the race window
                await session.execute(
                    text(
                        "INSERT INTO orders (user_id, house_id, request_id, quantity,"
                        " unit_price_minor, subtotal_minor, total_minor, currency, provider,"
                        " expire_time) VALUES (:u, :h, gen_random_uuid(), 1, 600, 600, 600,"
                        " 'EUR', 'STRIPE', now() + interval '15 minutes')"
                    ),
                    {"u": alice.id, "h": house},
                )
        except ResourceExhausted as error:
            return error.reason
        return "OK"

    outcomes = await asyncio.gather(*(buy() for _ in range(4)))
    assert sorted(outcomes) == [
        "OK",
        "PLAY_LIMIT_EXCEEDED",
        "PLAY_LIMIT_EXCEEDED",
        "PLAY_LIMIT_EXCEEDED",
    ]
