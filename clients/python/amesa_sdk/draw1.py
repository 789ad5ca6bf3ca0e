"""DRAW-1 (SPEC §6.1): the canonical bytes, the Merkle entry log, the signatures and the winner
selection, as pure functions.

The server and every verifier must agree on these bytes exactly, so there is one copy: this
module. It needs only the standard library and `cryptography`; the server imports it (through
`server.lottery.draw`), it never imports the server.

Conventions: integers are unsigned big-endian (`u64` = 8 bytes), `house_id` is the UUID's 16 raw
bytes, hashes are SHA-256, hex is lowercase, times are Unix milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION = "AMESA-DRAW-1"
TREE_HEAD_DOMAIN = b"AMESA-TREE-HEAD-1"
BEACON_SCHEME = "bls-unchained-g1-rfc9380"

HASH_SIZE = 32
TICKET_SECRET_SIZE = 16
_U64_MAX = 2**64 - 1
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

MANIFEST_KEYS = frozenset(
    {
        "version",
        "house_id",
        "total_tickets",
        "sales_close_time_ms",
        "beacon_chain_hash",
        "beacon_round",
        "beacon_public_key",
        "beacon_period_s",
        "beacon_genesis_time_s",
        "fallback",
        "published_time_ms",
    }
)


def u64(value: int) -> bytes:
    """`value` as 8 unsigned big-endian bytes; refuses anything outside 0 .. 2**64 - 1."""
    if isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise ValueError(f"not a u64: {value!r}")
    return value.to_bytes(8, "big")


# --------------------------------------------------------------------------------------------------
# Merkle entry log (RFC 9162 §2.1)
# --------------------------------------------------------------------------------------------------


def leaf_hash(*, house_id: uuid.UUID, number: int, secret: bytes, purchase_time_ms: int) -> bytes:
    """`SHA-256(0x00 ‖ house_id ‖ u64(number) ‖ secret ‖ u64(purchase_time_ms))`."""
    if len(secret) != TICKET_SECRET_SIZE:
        raise ValueError(f"a ticket secret is {TICKET_SECRET_SIZE} bytes, got {len(secret)}")
    return hashlib.sha256(
        _LEAF_PREFIX + house_id.bytes + u64(number) + secret + u64(purchase_time_ms)
    ).digest()


def leaf_hashes(house_id: uuid.UUID, tickets: Iterable[tuple[int, bytes, int]]) -> list[bytes]:
    """`leaf_hash` of many `(number, secret, purchase_time_ms)` tickets of one house, in order:
    the same bytes, several times faster for the million leaves of a large draw."""
    sha256, join, prefix = hashlib.sha256, b"".join, _LEAF_PREFIX + house_id.bytes
    leaves = []
    for number, secret, time_ms in tickets:
        if len(secret) != TICKET_SECRET_SIZE:
            raise ValueError(f"a ticket secret is {TICKET_SECRET_SIZE} bytes, got {len(secret)}")
        try:
            preimage = join((prefix, number.to_bytes(8, "big"), secret, time_ms.to_bytes(8, "big")))
        except OverflowError as error:  # negative, or wider than 64 bits
            raise ValueError(f"ticket {number}: number or time is not a u64") from error
        leaves.append(sha256(preimage).digest())
    return leaves


def node_hash(left: bytes, right: bytes) -> bytes:
    """`SHA-256(0x01 ‖ left ‖ right)`."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _parent_level(level: Sequence[bytes]) -> list[bytes]:
    # Pairing left to right and carrying an odd last node up unchanged builds exactly RFC 9162's
    # tree (split at the largest power of two below n): the left subtrees are always perfect.
    sha256, join, nodes = hashlib.sha256, b"".join, iter(level)
    parents = [
        sha256(join((_NODE_PREFIX, left, right))).digest()
        for left, right in zip(nodes, nodes, strict=False)  # an odd last node has no pair
    ]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle Tree Hash of leaf hashes (already `0x00`-prefixed and hashed)."""
    if not leaves:
        return EMPTY_ROOT
    level: Sequence[bytes] = leaves
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


class MerkleTree:
    """A tree kept level by level, for many inclusion proofs against one tree size."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._levels: list[Sequence[bytes]] = [list(leaves)]
        while len(self._levels[-1]) > 1:
            self._levels.append(_parent_level(self._levels[-1]))

    @property
    def size(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of leaf `index` (RFC 9162 §2.1.3.1), sibling of the leaf first."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        path = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # else this node is carried up unchanged
                path.append(level[sibling])
            index >>= 1
        return path


class MerkleFrontier:
    """The roots of the perfect subtrees that cover the leaves appended so far, largest first:
    enough to append a leaf and get the root in O(log n) without the leaves (an entry log
    growing one ticket at a time). Rebuild one from stored leaves with `extend`."""

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        node, size = leaf, self._size
        while size & 1:  # like a binary counter: each carry merges two equal subtrees
            node = node_hash(self._nodes.pop(), node)
            size >>= 1
        self._nodes.append(node)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    @property
    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        root = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            root = node_hash(node, root)
        return root


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `leaves`."""
    return MerkleTree(leaves).inclusion_proof(index)


def root_from_inclusion_proof(
    *, leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root an audit path leads to (RFC 9162 §2.1.3.2), or None if the path cannot belong to
    leaf `index` of a tree of `tree_size` leaves."""
    if not 0 <= index < tree_size:
        return None
    fn, sn, result = index, tree_size - 1, leaf
    for sibling in proof:
        if sn == 0 or len(sibling) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(
    *, leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows leaf `index` (hash `leaf`) in the tree of `tree_size` with `root`."""
    computed = root_from_inclusion_proof(leaf=leaf, index=index, tree_size=tree_size, proof=proof)
    return computed is not None and hmac.compare_digest(computed, root)


# --------------------------------------------------------------------------------------------------
# Signatures: tree heads and the manifest (Ed25519 transparency key)
# --------------------------------------------------------------------------------------------------


def tree_head_message(
    *, house_id: uuid.UUID, tree_size: int, root: bytes, timestamp_ms: int
) -> bytes:
    """`"AMESA-TREE-HEAD-1" ‖ house_id ‖ u64(tree_size) ‖ root ‖ u64(timestamp_ms)`."""
    if len(root) != HASH_SIZE:
        raise ValueError("a root is 32 bytes")
    return TREE_HEAD_DOMAIN + house_id.bytes + u64(tree_size) + root + u64(timestamp_ms)


def sign_tree_head(
    key: Ed25519PrivateKey,
    *,
    house_id: uuid.UUID,
    tree_size: int,
    root: bytes,
    timestamp_ms: int,
) -> bytes:
    return key.sign(
        tree_head_message(
            house_id=house_id, tree_size=tree_size, root=root, timestamp_ms=timestamp_ms
        )
    )


def verify_tree_head(
    public_key: Ed25519PublicKey,
    *,
    house_id: uuid.UUID,
    tree_size: int,
    root: bytes,
    timestamp_ms: int,
    signature: bytes,
) -> bool:
    message = tree_head_message(
        house_id=house_id, tree_size=tree_size, root=root, timestamp_ms=timestamp_ms
    )
    return _verify(public_key, signature, message)


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no whitespace, UTF-8 (not \\u-escaped). Floats are refused: canonical
    numbers are integers only, so every implementation prints them the same way."""
    _refuse_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("canonical JSON holds integers only, not floats")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("canonical JSON object keys are strings")
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def build_manifest(
    *,
    house_id: uuid.UUID,
    total_tickets: int,
    sales_close_time_ms: int,
    beacon_chain_hash: str,
    beacon_round: int,
    beacon_public_key: str,
    beacon_period_s: int,
    beacon_genesis_time_s: int,
    fallback: str,
    published_time_ms: int,
) -> dict[str, Any]:
    """The manifest object (SPEC §6.1); sign `canonical_json(manifest)`."""
    return {
        "version": VERSION,
        "house_id": str(house_id),
        "total_tickets": total_tickets,
        "sales_close_time_ms": sales_close_time_ms,
        "beacon_chain_hash": beacon_chain_hash,
        "beacon_round": beacon_round,
        "beacon_public_key": beacon_public_key,
        "beacon_period_s": beacon_period_s,
        "beacon_genesis_time_s": beacon_genesis_time_s,
        "fallback": fallback,
        "published_time_ms": published_time_ms,
    }


def sign_manifest(key: Ed25519PrivateKey, manifest: Mapping[str, Any]) -> bytes:
    return key.sign(canonical_json(manifest))


def verify_manifest(
    public_key: Ed25519PublicKey, manifest: Mapping[str, Any], signature: bytes
) -> bool:
    return _verify(public_key, signature, canonical_json(manifest))


def _verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Beacon round, seed and selection
# --------------------------------------------------------------------------------------------------


def round_time_ms(beacon_round: int, *, genesis_time_s: int, period_s: int) -> int:
    """When round R is produced: `genesis + (R - 1) * period`, in milliseconds."""
    if beacon_round < 1:
        raise ValueError("drand rounds start at 1")
    return (genesis_time_s + (beacon_round - 1) * period_s) * 1000


def target_round(*, not_before_ms: int, genesis_time_s: int, period_s: int) -> int:
    """The first round produced at or after `not_before_ms` (sales close + the configured delay)."""
    if period_s <= 0:
        raise ValueError("a beacon period is positive")
    elapsed_ms = not_before_ms - genesis_time_s * 1000
    if elapsed_ms <= 0:
        return 1
    period_ms = period_s * 1000
    return 1 + -(-elapsed_ms // period_ms)


def beacon_randomness(signature: bytes) -> bytes:
    """`r = SHA-256(signature)` (drand's own definition of a round's randomness)."""
    return hashlib.sha256(signature).digest()


def derive_seed(
    *, house_id: uuid.UUID, root: bytes, tree_size: int, beacon_round: int, randomness: bytes
) -> bytes:
    """`SHA-256("AMESA-DRAW-1" ‖ house_id ‖ root ‖ u64(N) ‖ u64(R) ‖ r)`."""
    if len(root) != HASH_SIZE or len(randomness) != HASH_SIZE:
        raise ValueError("root and randomness are 32 bytes")
    return hashlib.sha256(
        VERSION.encode() + house_id.bytes + root + u64(tree_size) + u64(beacon_round) + randomness
    ).digest()


def word(seed: bytes, k: int) -> int:
    """`w_k`: the first 8 bytes of `HMAC-SHA256(seed, u64(k))` as a u64."""
    return int.from_bytes(hmac.digest(seed, u64(k), "sha256")[:8], "big")


def rejection_limit(population: int) -> int:
    """`floor(2**64 / N) * N`: a word at or above it would favour low indexes, so it is rejected."""
    if population < 1:
        raise ValueError("a draw needs at least one ticket")
    return (2**64 // population) * population


@dataclass(frozen=True, slots=True)
class Word:
    k: int
    value: int
    accepted: bool


@dataclass(frozen=True, slots=True)
class Winner:
    rank: int
    index: int

    @property
    def ticket_number(self) -> int:
        return self.index + 1


@dataclass(frozen=True, slots=True)
class Selection:
    words: tuple[Word, ...]
    winners: tuple[Winner, ...]


def select_winners(*, seed: bytes, population: int, reserves: int) -> Selection:
    """The winner and up to `reserves` reserves among `population` tickets: word k → index
    `w_k mod N` unless rejected or already chosen; stops at the last winner. With fewer tickets
    than places, every ticket gets a rank."""
    if reserves < 0:
        raise ValueError("reserves cannot be negative")
    limit = rejection_limit(population)
    wanted = min(population, 1 + reserves)
    words: list[Word] = []
    winners: list[Winner] = []
    chosen: set[int] = set()
    k = 0
    while len(winners) < wanted:
        value = word(seed, k)
        index = value % population
        accepted = value < limit and index not in chosen
        words.append(Word(k=k, value=value, accepted=accepted))
        if accepted:
            chosen.add(index)
            winners.append(Winner(rank=len(winners), index=index))
        k += 1
    return Selection(words=tuple(words), winners=tuple(winners))


# --------------------------------------------------------------------------------------------------
# Transcript
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Beacon:
    chain_hash: str
    round: int
    signature: bytes

    @property
    def randomness(self) -> bytes:
        return beacon_randomness(self.signature)


def build_transcript(
    *,
    manifest: Mapping[str, Any],
    manifest_signature: bytes,
    transparency_public_key: bytes,
    leaves: Sequence[bytes],
    root: bytes,
    tree_head_timestamp_ms: int,
    tree_head_signature: bytes,
    beacon: Beacon,
    seed: bytes,
    selection: Selection,
    reserves_requested: int,
) -> dict[str, Any]:
    """The transcript object of SPEC §6.1; serve `canonical_json(transcript)`. Takes the values
    as computed, so building it checks nothing — `verify_transcript` does."""
    return {
        "version": VERSION,
        "house_id": manifest["house_id"],
        "manifest": dict(manifest),
        "manifest_signature": manifest_signature.hex(),
        "transparency_public_key": transparency_public_key.hex(),
        "leaves": [leaf.hex() for leaf in leaves],
        "tree_size": len(leaves),
        "root": root.hex(),
        "tree_head_timestamp_ms": tree_head_timestamp_ms,
        "tree_head_signature": tree_head_signature.hex(),
        "beacon": {
            "chain_hash": beacon.chain_hash,
            "round": beacon.round,
            "signature": beacon.signature.hex(),
            "randomness": beacon.randomness.hex(),
        },
        "seed": seed.hex(),
        "words": [
            {"k": w.k, "word": str(w.value), "accepted": w.accepted} for w in selection.words
        ],
        "winners": [
            {"rank": w.rank, "index": w.index, "ticket_number": w.ticket_number}
            for w in selection.winners
        ],
        "reserves_requested": reserves_requested,
    }
