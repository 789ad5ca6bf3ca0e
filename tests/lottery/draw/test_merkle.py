"""The entry log's Merkle tree against RFC 9162's recursive definition (§2.1.1, §2.1.3.1)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from server.lottery.draw import merkle


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(data: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, written as the RFC states it (the oracle)."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _largest_power_of_two_below(n)
    return hashlib.sha256(b"\x01" + _mth(data[:k]) + _mth(data[k:])).digest()


def _path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]) (the oracle)."""
    n = len(data)
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if m < k:
        return [*_path(m, data[:k]), _mth(data[k:])]
    return [*_path(m - k, data[k:]), _mth(data[:k])]


def _data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def _leaves(data: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + d).digest() for d in data]


@pytest.mark.parametrize("n", range(41))
def test_root_matches_the_rfc_9162_definition(n: int) -> None:
    data = _data(n)
    assert merkle.merkle_root(_leaves(data)) == _mth(data)
    assert merkle.MerkleTree(_leaves(data)).root == _mth(data)


def test_empty_tree_hashes_to_sha256_of_nothing() -> None:
    assert merkle.merkle_root([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("n", range(1, 41))
def test_inclusion_proof_is_the_rfc_9162_audit_path_for_every_leaf(n: int) -> None:
    data = _data(n)
    tree = merkle.MerkleTree(_leaves(data))
    for m in range(n):
        assert tree.inclusion_proof(m) == _path(m, data)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 100, 257])
def test_inclusion_proof_verifies_for_every_leaf(n: int) -> None:
    leaves = _leaves(_data(n))
    tree = merkle.MerkleTree(leaves)
    for index, leaf in enumerate(leaves):
        proof = tree.inclusion_proof(index)
        assert merkle.verify_inclusion(
            leaf=leaf, index=index, tree_size=n, proof=proof, root=tree.root
        )


@pytest.mark.parametrize("n", [2, 3, 7, 10, 33])
def test_inclusion_proof_fails_for_a_forged_leaf_index_root_or_path(n: int) -> None:
    # (The tree size is bound by the signed tree head, not by the path: a path can fit several
    # sizes with the same shape, as in RFC 9162.)
    leaves = _leaves(_data(n))
    tree = merkle.MerkleTree(leaves)
    forged = hashlib.sha256(b"\x00forged").digest()
    for index, leaf in enumerate(leaves):
        proof = tree.inclusion_proof(index)
        root = tree.root
        assert not merkle.verify_inclusion(
            leaf=forged, index=index, tree_size=n, proof=proof, root=root
        )
        assert not merkle.verify_inclusion(
            leaf=leaf, index=(index + 1) % n, tree_size=n, proof=proof, root=root
        )
        assert not merkle.verify_inclusion(
            leaf=leaf, index=index, tree_size=n, proof=proof, root=forged
        )
        assert not merkle.verify_inclusion(leaf=leaf, index=n, tree_size=n, proof=proof, root=root)
        assert not merkle.verify_inclusion(
            leaf=leaf, index=index, tree_size=n, proof=[*proof, forged], root=root
        )
        if proof:
            assert not merkle.verify_inclusion(
                leaf=leaf, index=index, tree_size=n, proof=proof[:-1], root=root
            )
            tampered = [forged, *proof[1:]]
            assert not merkle.verify_inclusion(
                leaf=leaf, index=index, tree_size=n, proof=tampered, root=root
            )


def test_proof_against_an_older_tree_head_uses_that_many_leaves() -> None:
    leaves = _leaves(_data(20))
    older = merkle.MerkleTree(leaves[:13])
    proof = older.inclusion_proof(4)
    assert merkle.verify_inclusion(
        leaf=leaves[4], index=4, tree_size=13, proof=proof, root=older.root
    )
    assert not merkle.verify_inclusion(
        leaf=leaves[4], index=4, tree_size=20, proof=proof, root=merkle.merkle_root(leaves)
    )


def test_inclusion_proof_of_a_leaf_outside_the_tree_is_an_error() -> None:
    tree = merkle.MerkleTree(_leaves(_data(3)))
    with pytest.raises(IndexError):
        tree.inclusion_proof(3)
    with pytest.raises(IndexError):
        merkle.inclusion_proof([], 0)


def test_leaf_hash_is_sha256_of_the_spec_preimage() -> None:
    house_id = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    secret = bytes(range(16))
    expected = hashlib.sha256(
        b"\x00"
        + bytes.fromhex("00112233445566778899aabbccddeeff")
        + (7).to_bytes(8, "big")
        + secret
        + (1_700_000_000_123).to_bytes(8, "big")
    ).digest()
    assert (
        merkle.leaf_hash(
            house_id=house_id, number=7, secret=secret, purchase_time_ms=1_700_000_000_123
        )
        == expected
    )


def test_leaf_hash_refuses_a_secret_that_is_not_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        merkle.leaf_hash(house_id=uuid.uuid4(), number=1, secret=b"short", purchase_time_ms=0)


def test_leaf_hashes_in_bulk_equal_leaf_hash_one_by_one() -> None:
    house_id = uuid.uuid4()
    tickets = [
        (n, hashlib.sha256(bytes([n])).digest()[:16], 1_700_000_000_000 + n) for n in range(1, 20)
    ]
    assert merkle.leaf_hashes(house_id, tickets) == [
        merkle.leaf_hash(house_id=house_id, number=n, secret=s, purchase_time_ms=t)
        for n, s, t in tickets
    ]


@pytest.mark.parametrize(
    ("ticket", "reason"),
    [((1, b"short", 0), "16 bytes"), ((-1, bytes(16), 0), "u64"), ((1, bytes(16), 2**64), "u64")],
)
def test_leaf_hashes_refuse_malformed_tickets(ticket: tuple[int, bytes, int], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        merkle.leaf_hashes(uuid.uuid4(), [ticket])


def test_frontier_root_after_each_append_matches_the_rfc_9162_definition() -> None:
    data = _data(70)
    frontier = merkle.MerkleFrontier()
    assert frontier.root == _mth([])
    for n, leaf in enumerate(_leaves(data), start=1):
        frontier.append(leaf)
        assert (frontier.size, frontier.root) == (n, _mth(data[:n]))
