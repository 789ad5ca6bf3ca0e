"""Seed derivation, the word stream and the unbiased selection of DRAW-1 (SPEC §6.1)."""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid

import pytest

from server.lottery.draw import protocol

# Chi-square critical values at p = 0.001 for N - 1 degrees of freedom.
CHI_SQUARE_CRITICAL = {2: 10.828, 3: 13.816, 7: 22.458, 10: 27.877}
SIMULATED_DRAWS = 20_000


def _seed(i: int) -> bytes:
    return hashlib.sha256(f"simulated seed {i}".encode()).digest()


def _chi_square(counts: list[int], expected: float) -> float:
    return sum((count - expected) ** 2 / expected for count in counts)


def test_word_is_the_first_8_bytes_of_hmac_sha256_of_the_counter() -> None:
    seed = _seed(0)
    for k in (0, 1, 2, 255, 2**32):
        digest = hmac.new(seed, struct.pack(">Q", k), hashlib.sha256).digest()
        assert protocol.word(seed, k) == struct.unpack(">Q", digest[:8])[0]


def test_seed_is_sha256_of_the_spec_preimage() -> None:
    house_id, root, randomness = uuid.uuid4(), bytes(range(32)), bytes(range(32, 64))
    expected = hashlib.sha256(
        b"AMESA-DRAW-1"
        + house_id.bytes
        + root
        + struct.pack(">Q", 1000)
        + struct.pack(">Q", 12345)
        + randomness
    ).digest()
    assert (
        protocol.derive_seed(
            house_id=house_id, root=root, tree_size=1000, beacon_round=12345, randomness=randomness
        )
        == expected
    )


@pytest.mark.parametrize("population", [2, 3, 7, 10])
def test_winner_is_uniform_over_the_tickets(population: int) -> None:
    counts = [0] * population
    for i in range(SIMULATED_DRAWS):
        selection = protocol.select_winners(seed=_seed(i), population=population, reserves=0)
        counts[selection.winners[0].index] += 1
    statistic = _chi_square(counts, SIMULATED_DRAWS / population)
    assert statistic < CHI_SQUARE_CRITICAL[population], counts


@pytest.mark.parametrize("population", [3, 7])
def test_first_reserve_is_uniform_too(population: int) -> None:
    counts = [0] * population
    for i in range(SIMULATED_DRAWS):
        selection = protocol.select_winners(seed=_seed(i), population=population, reserves=1)
        counts[selection.winners[1].index] += 1
    assert _chi_square(counts, SIMULATED_DRAWS / population) < CHI_SQUARE_CRITICAL[population]


def test_rejection_limit_is_the_largest_multiple_of_n_within_64_bits() -> None:
    assert protocol.rejection_limit(1) == 2**64
    assert protocol.rejection_limit(2) == 2**64
    assert protocol.rejection_limit(3) == 2**64 - 1
    assert protocol.rejection_limit(10) == 2**64 - 6
    assert protocol.rejection_limit(2**63 + 1) == 2**63 + 1


def test_a_word_at_or_above_the_limit_is_rejected() -> None:
    # With N = 2^63 + 1 the limit is N itself, so about half of all words are rejected: a
    # word's index (word mod N) would otherwise land on the low indexes twice as often.
    population = 2**63 + 1
    limit = protocol.rejection_limit(population)
    selection = protocol.select_winners(seed=_seed(1), population=population, reserves=5)
    rejected = [w for w in selection.words if w.value >= limit]
    assert rejected, "the fixed seed is expected to produce a rejected word"
    assert all(not w.accepted for w in rejected)
    chosen = [w.value % population for w in selection.words if w.accepted]
    assert [winner.index for winner in selection.winners] == chosen
    assert all(w.value < limit for w in selection.words if w.accepted)


def test_repeated_index_is_skipped_and_every_ticket_gets_a_rank() -> None:
    skipped = 0
    for i in range(10):
        selection = protocol.select_winners(seed=_seed(i), population=3, reserves=10)
        assert sorted(w.index for w in selection.winners) == [0, 1, 2]
        assert [w.rank for w in selection.winners] == [0, 1, 2]
        assert selection.words[-1].accepted  # the stream stops at the last winner
        assert [w.k for w in selection.words] == list(range(len(selection.words)))
        skipped += sum(not w.accepted for w in selection.words)
    assert skipped > 0  # with N = 3, repeats come fast


def test_single_ticket_wins_with_the_first_word() -> None:
    selection = protocol.select_winners(seed=_seed(3), population=1, reserves=2)
    assert [(w.rank, w.index, w.ticket_number) for w in selection.winners] == [(0, 0, 1)]
    assert len(selection.words) == 1


def test_selection_without_tickets_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one ticket"):
        protocol.select_winners(seed=_seed(4), population=0, reserves=0)


def test_same_inputs_give_the_same_draw() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(50)]
    house_id = uuid.uuid4()
    first, second = (
        protocol.compute_draw(
            house_id=house_id, leaves=leaves, beacon_round=9, beacon_signature=b"s" * 48, reserves=4
        )
        for _ in range(2)
    )
    assert first == second
    assert len(first.selection.winners) == 5


@pytest.mark.parametrize(
    ("not_before_ms", "expected"),
    [
        (0, 1),
        (1_692_803_367_000, 1),
        (1_692_803_367_001, 2),
        (1_692_803_370_000, 2),
        (1_692_803_370_001, 3),
        (1_692_803_373_000, 3),
    ],
)
def test_target_round_is_the_first_round_at_or_after_the_time(
    not_before_ms: int, expected: int
) -> None:
    assert (
        protocol.target_round(not_before_ms=not_before_ms, genesis_time_s=1_692_803_367, period_s=3)
        == expected
    )


def test_target_round_time_is_never_before_the_requested_time() -> None:
    genesis, period = 1_692_803_367, 3
    for not_before_ms in range(genesis * 1000, genesis * 1000 + 20_000, 377):
        target = protocol.target_round(
            not_before_ms=not_before_ms, genesis_time_s=genesis, period_s=period
        )
        time_ms = protocol.round_time_ms(target, genesis_time_s=genesis, period_s=period)
        assert time_ms >= not_before_ms
        if target > 1:
            earlier = protocol.round_time_ms(target - 1, genesis_time_s=genesis, period_s=period)
            assert earlier < not_before_ms


def test_canonical_json_sorts_keys_without_whitespace_in_utf8() -> None:
    assert protocol.canonical_json({"b": 1, "a": ["é", True, None]}) == (
        '{"a":["é",true,null],"b":1}'.encode()
    )


def test_canonical_json_refuses_floats() -> None:
    with pytest.raises(ValueError, match="integers only"):
        protocol.canonical_json({"a": [1.5]})


def test_tree_head_message_is_the_spec_layout() -> None:
    house_id, root = uuid.uuid4(), bytes(range(32))
    message = protocol.tree_head_message(
        house_id=house_id, tree_size=5, root=root, timestamp_ms=1_700_000_000_000
    )
    assert message == (
        b"AMESA-TREE-HEAD-1"
        + house_id.bytes
        + struct.pack(">Q", 5)
        + root
        + struct.pack(">Q", 1_700_000_000_000)
    )


def test_u64_refuses_values_outside_64_bits() -> None:
    assert protocol.u64(2**64 - 1) == b"\xff" * 8
    for value in (-1, 2**64):
        with pytest.raises(ValueError, match="u64"):
            protocol.u64(value)


def test_milliseconds_round_trip_and_refuse_sub_millisecond_times() -> None:
    moment = protocol.from_ms(1_692_803_370_123)
    assert protocol.to_ms(moment) == 1_692_803_370_123
    with pytest.raises(ValueError, match="whole milliseconds"):
        protocol.to_ms(moment.replace(microsecond=123_456))
    with pytest.raises(ValueError, match="timezone"):
        protocol.to_ms(moment.replace(tzinfo=None))
