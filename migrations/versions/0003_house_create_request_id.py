"""Houses: the client's idempotency key of CreateHouse.

`create_request_id` is optional (NULL when the client sent none); its UNIQUE constraint makes a
retry (even a concurrent one) find the first house instead of creating a second. The digest of
the request's parameters tells a retry from a reuse of the key with other parameters
(REQUEST_ID_REUSED).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "houses", sa.Column("create_request_id", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.add_column("houses", sa.Column("create_request_digest", postgresql.BYTEA(), nullable=True))
    op.create_unique_constraint(
        op.f("uq_houses_create_request_id"), "houses", ["create_request_id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_houses_create_request_id"), "houses", type_="unique")
    op.drop_column("houses", "create_request_digest")
    op.drop_column("houses", "create_request_id")
