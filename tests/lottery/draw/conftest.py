"""Real drand quicknet data (TOOLCHAIN.md) and a factory for complete DRAW-1 transcripts.

A transcript built here is genuinely verifiable: the manifest targets quicknet round 2 with the
chain's real public key, and the beacon section carries round 2's real signature.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.lottery.draw import merkle, protocol

QUICKNET_CHAIN_HASH = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971"
QUICKNET_PUBLIC_KEY = (
    "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d"
    "1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8"
    "991ef5ece45a"
)
QUICKNET_GENESIS_S = 1692803367
QUICKNET_PERIOD_S = 3
QUICKNET_ROUNDS = {
    2: (
        "b6b6a585449b66eb12e875b64fcbab3799861a00e4dbf092d99e969a5eac57dd3f798acf61e705fe4f093db926626807",
        "5782d6987841c654515a0e72b2d1ebb4e741234042c37cb19608ae50d93fb60c",
    ),
    3: (
        "b3fab6df720b68cc47175f2c777e86d84187caab5770906f515ff1099cb01e4deaa027075d860823e49477b93c72bd64",
        "7ef4621ace1c6da4eb2eee7cd901f81385bca5b189771ec0f08d0d2566dd1a21",
    ),
}
ROUND_2_TIME_MS = (QUICKNET_GENESIS_S + QUICKNET_PERIOD_S) * 1000
HOUSE_ID = uuid.UUID("6f1c2a34-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
TRANSPARENCY_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"transparency").digest())


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ticket_leaves(house_id: uuid.UUID, count: int) -> list[bytes]:
    """Leaves of tickets 1..count with deterministic secrets and purchase times."""
    return [
        merkle.leaf_hash(
            house_id=house_id,
            number=number,
            secret=hashlib.sha256(f"secret-{number}".encode()).digest()[:16],
            purchase_time_ms=ROUND_2_TIME_MS - 3_600_000 + number * 1000,
        )
        for number in range(1, count + 1)
    ]


def build_transcript(
    *,
    tickets: int = 37,
    total_tickets: int = 50,
    reserves: int = 3,
    sales_close_time_ms: int = ROUND_2_TIME_MS - 1000,
    published_time_ms: int = ROUND_2_TIME_MS - 86_400_000,
    key: Ed25519PrivateKey = TRANSPARENCY_KEY,
    house_id: uuid.UUID = HOUSE_ID,
) -> dict[str, Any]:
    """A complete, verifiable transcript drawn with the server's protocol functions."""
    manifest = protocol.build_manifest(
        house_id=house_id,
        total_tickets=total_tickets,
        sales_close_time_ms=sales_close_time_ms,
        beacon_chain_hash=QUICKNET_CHAIN_HASH,
        beacon_round=2,
        beacon_public_key=QUICKNET_PUBLIC_KEY,
        beacon_period_s=QUICKNET_PERIOD_S,
        beacon_genesis_time_s=QUICKNET_GENESIS_S,
        fallback="If round 2 is unavailable for 24 hours, the next available round is used.",
        published_time_ms=published_time_ms,
    )
    leaves = ticket_leaves(house_id, tickets)
    signature = bytes.fromhex(QUICKNET_ROUNDS[2][0])
    result = protocol.compute_draw(
        house_id=house_id,
        leaves=leaves,
        beacon_round=2,
        beacon_signature=signature,
        reserves=reserves,
    )
    head_time_ms = sales_close_time_ms + 200
    return protocol.build_transcript(
        manifest=manifest,
        manifest_signature=protocol.sign_manifest(key, manifest),
        transparency_public_key=public_key_bytes(key),
        leaves=leaves,
        root=result.root,
        tree_head_timestamp_ms=head_time_ms,
        tree_head_signature=protocol.sign_tree_head(
            key,
            house_id=house_id,
            tree_size=len(leaves),
            root=result.root,
            timestamp_ms=head_time_ms,
        ),
        beacon=protocol.Beacon(chain_hash=QUICKNET_CHAIN_HASH, round=2, signature=signature),
        seed=result.seed,
        selection=result.selection,
        reserves_requested=reserves,
    )


@pytest.fixture
def transcript() -> dict[str, Any]:
    return build_transcript()
