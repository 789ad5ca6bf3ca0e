"""Operator commands: `python -m server.manage migrate | seed | dev-keys | invariants`.

`migrate` creates the database when it does not exist yet and applies every Alembic migration;
`seed` loads the demo data idempotently; `dev-keys` writes a development JWT signing key;
`invariants` prints every violation of the money-path invariants (SPEC §5) and exits 1 if there
is any, 0 otherwise (2 when the settings are invalid).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.db import Database, async_url
from server.core.settings import SettingsError, load_settings
from server.core.tokens import write_private_key
from server.payment.gateways import build_gateways
from server.payment.invariants import check_invariants, summary
from server.seed import seed

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("amesa.manage")


async def create_database_if_missing(url: str) -> bool:
    """Creates the database `url` names (connecting to its server's `postgres` database)."""
    target = make_url(async_url(url))
    name = target.database
    if not name:
        raise ValueError("the database URL names no database")
    engine = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            quoted = '"' + name.replace('"', '""') + '"'
            await connection.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        await engine.dispose()


def alembic_config(url: str, *, output: TextIO | None = None) -> Config:
    """Alembic's configuration for `url`; `output` receives offline (--sql) output."""
    config = Config(str(ROOT / "migrations" / "alembic.ini"), output_buffer=output)
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False  # keep our JSON log handlers
    return config


def migrate(url: str, revision: str = "head") -> None:
    if asyncio.run(create_database_if_missing(url)):
        log.info("created database %s", make_url(async_url(url)).database)
    command.upgrade(alembic_config(url), revision)


def write_dev_key(path: Path) -> bool:
    """Writes a development Ed25519 signing key unless one exists; True when it wrote one."""
    if path.exists():
        return False
    write_private_key(path, Ed25519PrivateKey.generate())
    return True


async def report_invariants(output: TextIO) -> int:
    """Checks the whole database (and Stripe, when configured) with the server's settings;
    returns the exit status."""
    settings = load_settings()
    database = Database(settings.database_url, role=settings.database_role, pool_size=1)
    gateways = build_gateways(settings.payment)
    try:
        violations = await check_invariants(database, gateway=gateways.stripe_gateway)
    finally:
        await gateways.aclose()
        await database.close()
    for violation in violations:
        output.write(f"{violation}\n")
    output.write(summary(violations) + "\n")
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="amesa: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m server.manage")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    sub.add_parser("seed", help="load demo data (idempotent)")
    keys = sub.add_parser("dev-keys", help="write a development JWT signing key")
    keys.add_argument("path", type=Path)
    sub.add_parser("invariants", help="check the money-path invariants; exit 1 on any violation")
    args = parser.parse_args(argv)
    url = os.environ.get("AMESA_DATABASE_URL", "")
    if args.command == "dev-keys":
        if write_dev_key(args.path):
            log.info("wrote a development signing key to %s", args.path)
        return
    if not url:
        sys.stderr.write("AMESA_DATABASE_URL is required\n")
        sys.exit(2)
    if args.command == "migrate":
        migrate(url)
    elif args.command == "seed":
        for line in asyncio.run(seed(url)):
            log.info("%s", line)
    elif args.command == "invariants":
        try:
            status = asyncio.run(report_invariants(sys.stdout))
        except SettingsError as error:
            sys.stderr.write(f"{error}\n")
            sys.exit(2)
        sys.exit(status)


if __name__ == "__main__":
    main()
