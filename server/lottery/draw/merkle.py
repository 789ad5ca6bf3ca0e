"""The entry log's Merkle tree (RFC 9162 §2.1, SPEC §6.1).

The functions live in the Python SDK (`amesa_sdk.draw1`) so the server and the standalone
verifier hash the same bytes with the same code; this module is the server's name for them.
"""

from __future__ import annotations

from amesa_sdk.draw1 import (
    EMPTY_ROOT,
    HASH_SIZE,
    TICKET_SECRET_SIZE,
    MerkleFrontier,
    MerkleTree,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    merkle_root,
    node_hash,
    root_from_inclusion_proof,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TICKET_SECRET_SIZE",
    "MerkleFrontier",
    "MerkleTree",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hashes",
    "merkle_root",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_inclusion",
]
