"""Closed accounts lose their personal data after the grace period (SPEC §3 DeleteUser).

DeleteUser only marks the account DELETED and revokes its sessions, so a mistaken closure can
still be undone by support within ANONYMISE_AFTER. Then this job, once per interval across the
replicas, erases the person: profile fields scrubbed, birth date, addresses, phones, OAuth
links, in-app notifications, the activity log (addresses and user agents) and identity
documents (rows and encrypted files) removed. The user row itself stays,
anonymous, because orders, tickets, transactions and the audit trail — financial records that
must be kept — point at it.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import UserIdentity
from server.core.audit import record_audit
from server.core.db import Database
from server.core.deps import Deps
from server.core.models import ActivityLog
from server.core.names import user_name
from server.user.documents import DocumentStore
from server.user.models import (
    Notification,
    User,
    UserAddress,
    UserIdentityDocument,
    UserPhone,
    UserStatus,
)

log = logging.getLogger("amesa.user.anonymise")

ANONYMISE_AFTER: Final = datetime.timedelta(days=30)
JOB_NAME: Final = "user.anonymise_closed_accounts"
BATCH: Final = 100


def anonymous_email(user_id: uuid.UUID) -> str:
    """Unique (the column is), undeliverable (.invalid is reserved by RFC 2606), and personless."""
    return f"deleted-{user_id}@anonymised.invalid"


async def anonymise_closed_accounts(session: AsyncSession, *, now: datetime.datetime) -> list[str]:
    """Anonymises up to BATCH accounts closed before `now - ANONYMISE_AFTER`; returns the
    storage names of their document files, to delete once this transaction has committed."""
    users = list(
        (
            await session.scalars(
                select(User)
                .where(
                    User.status == UserStatus.DELETED,
                    User.delete_time < now - ANONYMISE_AFTER,
                    User.anonymize_time.is_(None),
                )
                .order_by(User.delete_time)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    files: list[str] = []
    for user in users:
        files += list(
            (
                await session.scalars(
                    delete(UserIdentityDocument)
                    .where(UserIdentityDocument.user_id == user.id)
                    .returning(UserIdentityDocument.file_storage_name)
                )
            ).all()
        )
        for table in (UserAddress, UserPhone, UserIdentity, Notification, ActivityLog):
            await session.execute(delete(table).where(table.user_id == user.id))
        user.email = anonymous_email(user.id)
        user.pending_email = None
        user.email_verify_time = None
        user.password_hash = None
        user.given_name = ""
        user.family_name = ""
        user.birth_date_ciphertext = None
        user.birth_date_key_id = None
        user.birth_date_blind_index = None
        user.marketing_opt_in = False
        user.status_reason = None
        user.anonymize_time = func.now()
        await record_audit(
            session,
            actor=None,
            action="user.anonymise",
            resource_name=user_name(user.id),
            before={"status": "DELETED"},
            after={"anonymised": True},
        )
    return files


def register_anonymiser(deps: Deps) -> None:
    """Runs the erasure hourly, on one replica at a time."""
    store = DocumentStore(deps.cipher, deps.settings.document_dir)

    async def run(database: Database) -> None:
        async with database.session(system=True) as session:
            files = await anonymise_closed_accounts(
                session, now=datetime.datetime.now(datetime.UTC)
            )
        for storage_name in files:  # after commit: a rollback must not lose files still listed
            await store.remove(storage_name)
        if files:
            log.info("erased %d identity document files of closed accounts", len(files))

    deps.jobs.register(JOB_NAME, run, interval=datetime.timedelta(hours=1))
