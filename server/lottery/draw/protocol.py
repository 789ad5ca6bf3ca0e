"""DRAW-1 (SPEC §6, §6.1): manifest, signed tree heads, target round, seed, selection and
transcript.

The byte-exact functions live in the Python SDK (`amesa_sdk.draw1`), shared with the standalone
verifier; this module re-exports them and adds `compute_draw`, the one call the draw service makes
once the final tree head and the verified beacon round are stored. Nothing here touches the
database or the network, so an interrupted draw recomputes the same result from the same inputs.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from amesa_sdk.draw1 import (
    BEACON_SCHEME,
    MANIFEST_KEYS,
    TREE_HEAD_DOMAIN,
    VERSION,
    Beacon,
    Selection,
    Winner,
    Word,
    beacon_randomness,
    build_manifest,
    build_transcript,
    canonical_json,
    derive_seed,
    merkle_root,
    rejection_limit,
    round_time_ms,
    select_winners,
    sign_manifest,
    sign_tree_head,
    target_round,
    tree_head_message,
    u64,
    verify_manifest,
    verify_tree_head,
    word,
)
from amesa_sdk.verify import Verdict, VerificationFailed, verify_transcript

__all__ = [
    "BEACON_SCHEME",
    "MANIFEST_KEYS",
    "TREE_HEAD_DOMAIN",
    "VERSION",
    "Beacon",
    "DrawResult",
    "Selection",
    "Verdict",
    "VerificationFailed",
    "Winner",
    "Word",
    "beacon_randomness",
    "build_manifest",
    "build_transcript",
    "canonical_json",
    "compute_draw",
    "derive_seed",
    "from_ms",
    "rejection_limit",
    "round_time_ms",
    "select_winners",
    "sign_manifest",
    "sign_tree_head",
    "target_round",
    "to_ms",
    "tree_head_message",
    "u64",
    "verify_manifest",
    "verify_transcript",
    "verify_tree_head",
    "word",
]


def to_ms(moment: datetime.datetime) -> int:
    """Unix milliseconds of an aware datetime; refuses sub-millisecond precision, which a
    signature over whole milliseconds could not be recomputed from."""
    if moment.tzinfo is None:
        raise ValueError("DRAW-1 times must be timezone-aware")
    if moment.microsecond % 1000:
        raise ValueError("DRAW-1 times are whole milliseconds")
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(milliseconds: int) -> datetime.datetime:
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        milliseconds=milliseconds
    )


@dataclass(frozen=True, slots=True)
class DrawResult:
    root: bytes
    randomness: bytes
    seed: bytes
    selection: Selection


def compute_draw(
    *,
    house_id: uuid.UUID,
    leaves: Sequence[bytes],
    beacon_round: int,
    beacon_signature: bytes,
    reserves: int,
) -> DrawResult:
    """Root, seed and winners from the frozen leaves and a beacon round whose signature has
    already been verified (`BeaconClient.fetch_round` does that)."""
    root = merkle_root(leaves)
    randomness = beacon_randomness(beacon_signature)
    seed = derive_seed(
        house_id=house_id,
        root=root,
        tree_size=len(leaves),
        beacon_round=beacon_round,
        randomness=randomness,
    )
    selection = select_winners(seed=seed, population=len(leaves), reserves=reserves)
    return DrawResult(root=root, randomness=randomness, seed=seed, selection=selection)
