"""Imports every models module so that `Base.metadata` describes the whole schema.

Alembic's env.py and the schema tests import this module rather than listing the modules
themselves, so a new models module is registered in exactly one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import MetaData

import server.auth.models
import server.content.models
import server.core.models
import server.lottery.models
import server.payment.models
import server.user.models
from server.core.orm import Base

if TYPE_CHECKING:
    from alembic.runtime.environment import NameFilterType
    from sqlalchemy.sql.schema import SchemaItem

MODELS_MODULES = (
    server.core.models,
    server.auth.models,
    server.user.models,
    server.lottery.models,
    server.payment.models,
    server.content.models,
)

metadata: MetaData = Base.metadata

# Tables that exist in the database but are not ours: PostGIS creates `spatial_ref_sys` in the
# schema it is installed into. Autogenerate must neither drop nor diff them.
FOREIGN_TABLES = frozenset({"spatial_ref_sys"})


def include_object(
    obj: SchemaItem,
    name: str | None,
    type_: NameFilterType,
    reflected: bool,
    compare_to: SchemaItem | None,
) -> bool:
    """Alembic `include_object` hook shared by env.py and tests/core/test_schema.py."""
    return not (type_ == "table" and name in FOREIGN_TABLES)
