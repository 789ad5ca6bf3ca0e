"""Identity documents: the client's idempotency key of UploadIdentityDocument.

`request_id` is optional (NULL when the client sent none); `UNIQUE (user_id, request_id)` makes a
retry find the first document instead of storing the file twice (NULLs never collide).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "user_identity_documents",
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=True),
    )
    op.create_unique_constraint(
        op.f("uq_user_identity_documents_user_id_request_id"),
        "user_identity_documents",
        ["user_id", "request_id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("uq_user_identity_documents_user_id_request_id"),
        "user_identity_documents",
        type_="unique",
    )
    op.drop_column("user_identity_documents", "request_id")
