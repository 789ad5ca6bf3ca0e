"""Demo data for `make run`: an administrator, a demo user, a handful of houses, the languages and
public settings. Idempotent: rows have fixed ids or natural keys and existing rows are kept, so
running it again changes nothing. Refuses to run in production.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.app import signing_key
from server.auth.passwords import hash_password
from server.content.models import Language, SystemSetting
from server.core.crypto import PiiCipher
from server.core.db import Database
from server.core.settings import load_settings
from server.lottery.draws import DrawSigner, create_draw
from server.lottery.models import House, HouseState, PropertyType
from server.user.models import KycStatus, Role, User

_NAMESPACE = uuid.UUID("5b0c6f1e-5f0e-4c47-9d1e-6a6d657361aa")  # uuid5 namespace of demo rows

ADMIN_EMAIL = "admin@amesa.local"
ADMIN_PASSWORD = "amesa-admin-demo-2026"  # noqa: S105 — printed demo credential, dev only
DEMO_EMAIL = "demo@amesa.local"
DEMO_PASSWORD = "amesa-demo-user-2026"  # noqa: S105 — printed demo credential, dev only

LANGUAGES: list[dict[str, Any]] = [  # the `languages` rows
    {
        "language_code": "en",
        "native_name": "English",
        "english_name": "English",
        "is_default": True,
        "right_to_left": False,
    },
    {
        "language_code": "he",
        "native_name": "עברית",
        "english_name": "Hebrew",
        "is_default": False,
        "right_to_left": True,
    },
    {
        "language_code": "fr",
        "native_name": "Français",
        "english_name": "French",
        "is_default": False,
        "right_to_left": False,
    },
    {
        "language_code": "de",
        "native_name": "Deutsch",
        "english_name": "German",
        "is_default": False,
        "right_to_left": False,
    },
]

# key → (value, public, description)
SETTINGS: dict[str, tuple[Any, bool, str]] = {
    "default_currency": ("EUR", True, "ISO 4217 currency of ticket prices and play limits."),
    "support_email": ("support@amesa.local", True, "Where users write for help."),
    "purchase_requires_kyc": (True, True, "Purchases need an approved identity document."),
    "minimum_age": (18, True, "Minimum age in years to register and buy tickets."),
    "terms_version": ("2026-01", True, "Terms version new accounts must accept (Register)."),
}


@dataclass(frozen=True)
class DemoHouse:
    key: str
    title: str
    description: str
    city: str
    country_code: str
    lat: float
    lng: float
    property_type: PropertyType
    bedrooms: int
    bathrooms: int
    area_m2: float
    value_minor: int
    ticket_price_minor: int
    total_tickets: int
    state: HouseState
    opens_in_days: int
    features: tuple[str, ...]


HOUSES = (
    DemoHouse(
        "lisbon",
        "Sunlit townhouse in Alfama",
        "Three floors over the Tagus, restored tiles, roof terrace with river views.",
        "Lisbon",
        "PT",
        38.7118,
        -9.1300,
        PropertyType.TOWNHOUSE,
        3,
        2,
        148.0,
        69_000_000,
        2_500,
        40_000,
        HouseState.ACTIVE,
        -3,
        ("roof terrace", "river view", "restored"),
    ),
    DemoHouse(
        "haifa",
        "Carmel villa with sea view",
        "Quiet street on Mount Carmel, garden, pool and a view over the bay.",
        "Haifa",
        "IL",
        32.7940,
        34.9896,
        PropertyType.VILLA,
        5,
        3,
        310.0,
        120_000_000,
        5_000,
        30_000,
        HouseState.ACTIVE,
        -10,
        ("pool", "garden", "sea view"),
    ),
    DemoHouse(
        "lyon",
        "Canal-side apartment in Lyon",
        "Bright top-floor apartment by the Saône, two balconies, walking distance to the old town.",
        "Lyon",
        "FR",
        45.7640,
        4.8357,
        PropertyType.APARTMENT,
        2,
        1,
        86.0,
        42_000_000,
        1_500,
        35_000,
        HouseState.UPCOMING,
        7,
        ("balcony", "elevator"),
    ),
    DemoHouse(
        "berlin",
        "Family house in Zehlendorf",
        "Detached family house near the lakes, large garden, renovated 2024.",
        "Berlin",
        "DE",
        52.4345,
        13.2590,
        PropertyType.HOUSE,
        4,
        2,
        175.0,
        89_000_000,
        3_000,
        35_000,
        HouseState.DRAFT,
        21,
        ("garden", "garage", "renovated"),
    ),
)


def _demo_id(key: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, key)


async def _upsert_user(
    session: AsyncSession,
    cipher: PiiCipher,
    *,
    email: str,
    password: str,
    given_name: str,
    roles: list[str],
) -> None:
    birth_date = date(1990, 5, 17).isoformat()
    encrypted = cipher.encrypt(birth_date, context="users.birth_date")
    now = datetime.now(UTC)
    await session.execute(
        insert(User)
        .values(
            id=_demo_id(email),
            email=email,
            email_verify_time=now,
            password_hash=await hash_password(password),
            given_name=given_name,
            family_name="Demo",
            birth_date_ciphertext=encrypted.ciphertext,
            birth_date_key_id=encrypted.key_id,
            birth_date_blind_index=cipher.blind_index(birth_date, context="users.birth_date"),
            preferred_language="en",
            accepted_terms_version="2026-01",
            terms_accept_time=now,
            kyc_status=KycStatus.APPROVED,
            roles=roles,
        )
        .on_conflict_do_nothing(index_elements=[User.email])
    )


async def _upsert_house(session: AsyncSession, house: DemoHouse, signer: DrawSigner) -> None:
    """Inserts the house if absent; a published one gets its draw with a signed manifest, as
    PublishHouse would have made it."""
    now = datetime.now(UTC).replace(microsecond=0)
    opens = now + timedelta(days=house.opens_in_days)
    closes = opens + timedelta(days=45)
    inserted = await session.scalar(
        insert(House)
        .values(
            id=_demo_id(f"house:{house.key}"),
            title=house.title,
            description=house.description,
            country_code=house.country_code,
            city=house.city,
            location=func.ST_GeogFromText(f"SRID=4326;POINT({house.lng} {house.lat})"),
            property_type=house.property_type,
            bedrooms=house.bedrooms,
            bathrooms=house.bathrooms,
            area_m2=house.area_m2,
            property_value_minor=house.value_minor,
            property_value_currency="EUR",
            features=list(house.features),
            ticket_price_minor=house.ticket_price_minor,
            currency="EUR",
            total_tickets=house.total_tickets,
            min_participation=house.total_tickets // 2,
            max_tickets_per_order=50,
            max_tickets_per_user=200,
            sales_open_time=opens,
            sales_close_time=closes,
            draw_time=closes + timedelta(days=1),
            state=house.state,
            publish_time=now if house.state is not HouseState.DRAFT else None,
        )
        .on_conflict_do_nothing(index_elements=[House.id])
        .returning(House.id)
    )
    if inserted is None or house.state is HouseState.DRAFT:
        return
    row = await session.get(House, inserted)
    assert row is not None
    await create_draw(session, signer, house=row, now=now)


async def seed(url: str) -> list[str]:
    """Loads the demo data; returns lines describing the demo credentials."""
    settings = load_settings({**os.environ, "AMESA_DATABASE_URL": url})
    if settings.is_production:
        raise RuntimeError("refusing to load demo data into a production database")
    cipher = PiiCipher(
        {settings.pii_key_id: settings.pii_key},
        current_key_id=settings.pii_key_id,
        index_key=settings.pii_index_key,
    )
    database = Database(url, role=settings.database_role, pool_size=2)
    try:
        async with database.session(system=True) as session:
            await _upsert_user(
                session,
                cipher,
                email=ADMIN_EMAIL,
                password=ADMIN_PASSWORD,
                given_name="Ada",
                roles=[Role.USER.value, Role.ADMIN.value],
            )
            await _upsert_user(
                session,
                cipher,
                email=DEMO_EMAIL,
                password=DEMO_PASSWORD,
                given_name="Dana",
                roles=[Role.USER.value],
            )
            signer = DrawSigner(
                config=settings.draw,
                key=signing_key(
                    settings.transparency_key_file, variable="AMESA_TRANSPARENCY_KEY_FILE"
                ),
            )
            for house in HOUSES:
                await _upsert_house(session, house, signer)
            await session.execute(
                insert(Language)
                .values(LANGUAGES)
                .on_conflict_do_nothing(index_elements=[Language.language_code])
            )
            for key, (value, public, description) in SETTINGS.items():
                await session.execute(
                    insert(SystemSetting)
                    .values(key=key, value=value, is_public=public, description=description)
                    .on_conflict_do_nothing(index_elements=[SystemSetting.key])
                )
    finally:
        await database.close()
    return [
        f"admin     {ADMIN_EMAIL} / {ADMIN_PASSWORD}",
        f"demo user {DEMO_EMAIL} / {DEMO_PASSWORD}",
    ]
