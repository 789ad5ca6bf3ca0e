"""The standalone verifier (amesa_sdk.verify) on transcripts drawn with the server's functions:
a genuine one passes, and tampering with any field makes it fail."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from amesa_sdk import verify
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.lottery.draw import protocol
from tests.lottery.draw.conftest import (
    QUICKNET_ROUNDS,
    ROUND_2_TIME_MS,
    TRANSPARENCY_KEY,
    build_transcript,
    public_key_bytes,
)

Tamper = Callable[[dict[str, Any]], None]
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"other").digest())


def _flip(text: str) -> str:
    """The same hex string with its last character changed."""
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def _set(path: tuple[str | int, ...], value: Any) -> Tamper:
    def tamper(transcript: dict[str, Any]) -> None:
        target: Any = transcript
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value

    return tamper


def _bump(value: int) -> int:
    return value + 1


TAMPERS: dict[str, Tamper] = {
    "version": _set(("version",), "AMESA-DRAW-2"),
    "house_id": _set(("house_id",), "00000000-0000-4000-8000-000000000000"),
    "house_id upper case": _set(("house_id",), str.upper),
    "manifest_signature": _set(("manifest_signature",), _flip),
    "transparency_public_key": _set(
        ("transparency_public_key",), public_key_bytes(OTHER_KEY).hex()
    ),
    "leaves: one leaf": _set(("leaves", 5), _flip),
    "leaves: one leaf upper case": _set(("leaves", 5), str.upper),
    "leaves: swapped": lambda t: t["leaves"].insert(0, t["leaves"].pop(1)),
    "leaves: one dropped": lambda t: t["leaves"].pop(),
    "leaves: one added": lambda t: t["leaves"].append("ab" * 32),
    "tree_size": _set(("tree_size",), _bump),
    "root": _set(("root",), _flip),
    "tree_head_timestamp_ms": _set(("tree_head_timestamp_ms",), _bump),
    "tree_head_signature": _set(("tree_head_signature",), _flip),
    "beacon.chain_hash": _set(("beacon", "chain_hash"), _flip),
    "beacon.round": _set(("beacon", "round"), 3),
    "beacon.signature of another round": _set(("beacon", "signature"), QUICKNET_ROUNDS[3][0]),
    "beacon.signature and randomness of another round": lambda t: t["beacon"].update(
        signature=QUICKNET_ROUNDS[3][0], randomness=QUICKNET_ROUNDS[3][1]
    ),
    "beacon.randomness": _set(("beacon", "randomness"), _flip),
    "beacon: extra key": _set(("beacon", "note"), "x"),
    "seed": _set(("seed",), _flip),
    "words: a word": _set(("words", 0, "word"), lambda w: str(int(w) + 1)),
    "words: a word with a leading zero": _set(("words", 0, "word"), lambda w: "0" + w),
    "words: accepted": _set(("words", 0, "accepted"), lambda a: not a),
    "words: k": _set(("words", 1, "k"), 7),
    "words: last dropped": lambda t: t["words"].pop(),
    "words: one added": lambda t: t["words"].append({"k": 99, "word": "1", "accepted": False}),
    "winners: ticket_number": _set(("winners", 0, "ticket_number"), _bump),
    "winners: index": _set(("winners", 0, "index"), _bump),
    "winners: rank": _set(("winners", 1, "rank"), 0),
    "winners: swapped": lambda t: t["winners"].reverse(),
    "winners: reserve dropped": lambda t: t["winners"].pop(),
    "reserves_requested: more": _set(("reserves_requested",), _bump),
    "reserves_requested: fewer": _set(("reserves_requested",), lambda r: r - 1),
    "reserves_requested: bool": _set(("reserves_requested",), True),
    "unknown top-level key": _set(("comment",), "trust me"),
    "missing top-level key": lambda t: t.pop("seed"),
}
MANIFEST_TAMPERS: dict[str, Any] = {
    "version": "AMESA-DRAW-0",
    "house_id": "00000000-0000-4000-8000-000000000000",
    "total_tickets": 51,
    "sales_close_time_ms": ROUND_2_TIME_MS - 999,
    "beacon_chain_hash": "00" * 32,
    "beacon_round": 3,
    "beacon_public_key": "00" * 96,
    "beacon_period_s": 4,
    "beacon_genesis_time_s": 1,
    "fallback": "The operator picks a winner.",
    "published_time_ms": ROUND_2_TIME_MS - 1,
}


def _fails(transcript: dict[str, Any], match: str | None = None) -> str:
    with pytest.raises(verify.VerificationFailed, match=match) as failure:
        verify.verify_transcript(transcript)
    return str(failure.value)


def test_genuine_transcript_passes_with_its_winner(transcript: dict[str, Any]) -> None:
    verdict = verify.verify_transcript(transcript)
    assert verdict.tree_size == 37
    assert verdict.winner_ticket_number == transcript["winners"][0]["ticket_number"]
    assert [(w.rank, w.index, w.ticket_number) for w in verdict.winners] == [
        (w["rank"], w["index"], w["ticket_number"]) for w in transcript["winners"]
    ]
    assert len(verdict.winners) == 4
    assert verdict.summary().startswith("PASS: ")


def test_verifying_the_same_transcript_twice_gives_the_same_winner(
    transcript: dict[str, Any],
) -> None:
    data = protocol.canonical_json(transcript)
    first = verify.verify_transcript(verify.load_transcript(data))
    second = verify.verify_transcript(verify.load_transcript(data))
    assert first == second


def test_transcript_covers_every_field_of_the_spec(transcript: dict[str, Any]) -> None:
    assert set(transcript) == verify.TRANSCRIPT_KEYS
    assert set(transcript["manifest"]) == protocol.MANIFEST_KEYS


@pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
def test_tampered_transcript_fails(transcript: dict[str, Any], tamper: Tamper) -> None:
    tampered = copy.deepcopy(transcript)
    tamper(tampered)
    assert tampered != transcript
    _fails(tampered)


@pytest.mark.parametrize(("key", "value"), MANIFEST_TAMPERS.items(), ids=MANIFEST_TAMPERS.keys())
def test_tampered_manifest_field_fails(transcript: dict[str, Any], key: str, value: Any) -> None:
    transcript["manifest"][key] = value
    _fails(transcript)


def test_tampered_transcript_fails_with_the_reason(transcript: dict[str, Any]) -> None:
    reasons = {
        "root": "root is not the Merkle tree hash",
        "seed": "seed is not the seed derived",
        "manifest_signature": "manifest_signature does not verify",
        "tree_head_signature": "tree_head_signature does not verify",
    }
    for key, reason in reasons.items():
        tampered = copy.deepcopy(transcript)
        tampered[key] = _flip(tampered[key])
        _fails(tampered, match=reason)
    tampered = copy.deepcopy(transcript)
    tampered["winners"][0]["ticket_number"] += 1
    _fails(tampered, match=r"winners\[0\] is not the recomputed rank 0")


def test_consistently_re_signed_forgery_fails_against_the_pinned_key() -> None:
    # Whoever holds another key can sign a whole consistent transcript; pinning the key Amesa
    # publishes (GetDraw) is what rules that out.
    forged = build_transcript(key=OTHER_KEY)
    assert verify.verify_transcript(forged).tree_size == 37
    with pytest.raises(verify.VerificationFailed, match="not the key you expected"):
        verify.verify_transcript(forged, transparency_public_key=public_key_bytes(TRANSPARENCY_KEY))


def test_beacon_round_before_sales_close_fails() -> None:
    transcript = build_transcript(sales_close_time_ms=ROUND_2_TIME_MS + 1)
    _fails(transcript, match="before sales close")


def test_manifest_published_after_its_beacon_round_fails() -> None:
    transcript = build_transcript(published_time_ms=ROUND_2_TIME_MS)
    _fails(transcript, match="published after its beacon round")


def test_more_leaves_than_tickets_on_sale_fails() -> None:
    _fails(build_transcript(tickets=5, total_tickets=4), match="total_tickets")


def test_every_ticket_ranked_when_reserves_exceed_the_tickets() -> None:
    transcript = build_transcript(tickets=3, reserves=5)
    verdict = verify.verify_transcript(transcript)
    assert sorted(w.ticket_number for w in verdict.winners) == [1, 2, 3]


def test_single_ticket_draw_passes() -> None:
    verdict = verify.verify_transcript(build_transcript(tickets=1, reserves=0))
    assert verdict.winner_ticket_number == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"a":1,"a":2}', "repeats a key"),
        (b'{"a":1.5}', "non-integer number"),
        (b'{"a":NaN}', "non-integer number"),
        (b"\xff", "not JSON"),
    ],
)
def test_malformed_json_fails(data: bytes, reason: str) -> None:
    with pytest.raises(verify.VerificationFailed, match=reason):
        verify.load_transcript(data)


def test_canonical_bytes_parse_back_to_the_same_transcript(transcript: dict[str, Any]) -> None:
    data = protocol.canonical_json(transcript)
    assert verify.load_transcript(data) == transcript
    assert (
        data
        == json.dumps(
            transcript, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )
