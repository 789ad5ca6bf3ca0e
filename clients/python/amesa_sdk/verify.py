"""The standalone DRAW-1 verifier: recomputes a draw from its transcript alone.

    python -m amesa_sdk.verify transcript.json [--transparency-key HEX]

It checks the manifest signature, recomputes the Merkle root from the published leaves and
checks the signed tree head, verifies the drand beacon round's BLS signature against the public
key the manifest committed to, and recomputes the seed, every word and every winner. It prints
`PASS: …` with the winning ticket number and exits 0, or `FAIL: <reason>` and exits 1.

The transcript names its own transparency key; pass the key Amesa publishes (GetDraw) with
`--transparency-key` to pin it. BLS verification uses the `drand-verify` package.
"""

from __future__ import annotations

import argparse
import hmac
import importlib
import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amesa_sdk import draw1

BLS_SIGNATURE_SIZE = 48
BLS_PUBLIC_KEY_SIZE = 96
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

TRANSCRIPT_KEYS = frozenset(
    {
        "version",
        "house_id",
        "manifest",
        "manifest_signature",
        "transparency_public_key",
        "leaves",
        "tree_size",
        "root",
        "tree_head_timestamp_ms",
        "tree_head_signature",
        "beacon",
        "seed",
        "words",
        "winners",
        "reserves_requested",
    }
)
BEACON_KEYS = frozenset({"chain_hash", "round", "signature", "randomness"})
WORD_KEYS = frozenset({"k", "word", "accepted"})
WINNER_KEYS = frozenset({"rank", "index", "ticket_number"})


class VerificationFailed(Exception):
    """The transcript does not prove its draw; the message says why."""


class BeaconVerifierMissing(VerificationFailed):
    """`drand-verify` is not installed, so the beacon signature cannot be checked."""


def verify_beacon_signature(*, beacon_round: int, signature: bytes, public_key: bytes) -> bytes:
    """Checks a drand quicknet round (`bls-unchained-g1-rfc9380`: BLS on G1 over
    SHA-256(u64(round))) and returns its randomness, SHA-256(signature). Raises
    VerificationFailed if the signature is not the chain's for that round."""
    try:
        module = importlib.import_module("drand_verify")
    except ImportError as error:
        raise BeaconVerifierMissing(
            "the drand-verify package is not installed (pip install drand-verify==0.2.1)"
        ) from error
    verify = cast(Callable[[int, str, str], str], module.verify_bls_unchained_g1_rfc9380)
    try:
        randomness = verify(beacon_round, signature.hex(), public_key.hex())
    except ValueError as error:
        raise VerificationFailed(
            f"the beacon signature is not the chain's signature of round {beacon_round}"
        ) from error
    except BaseException as error:
        # drand-verify panics (pyo3's PanicException, a BaseException) on bytes that are not a
        # curve point instead of raising ValueError.
        if type(error).__name__ != "PanicException":
            raise
        raise VerificationFailed(
            f"the beacon public key or signature of round {beacon_round} is not a curve point"
        ) from error
    expected = draw1.beacon_randomness(signature)
    if randomness != expected.hex():  # drand-verify computes it itself; they must agree
        raise VerificationFailed("drand-verify returned a different randomness")
    return expected


@dataclass(frozen=True, slots=True)
class Verdict:
    """A transcript that verified: the recomputed winners (rank 0 first) out of `tree_size`."""

    house_id: uuid.UUID
    tree_size: int
    winners: tuple[draw1.Winner, ...]

    @property
    def winner_ticket_number(self) -> int:
        return self.winners[0].ticket_number

    def summary(self) -> str:
        reserves = ", ".join(f"#{w.ticket_number}" for w in self.winners[1:]) or "none"
        return (
            f"PASS: house {self.house_id}: winning ticket #{self.winner_ticket_number} "
            f"of {self.tree_size}; reserves {reserves}"
        )


def verify_transcript(
    transcript: Mapping[str, Any], *, transparency_public_key: bytes | None = None
) -> Verdict:
    """Recomputes everything the transcript claims; raises VerificationFailed at the first
    mismatch. `transparency_public_key`, when given, must be the key the transcript names."""
    _exact_keys(transcript, TRANSCRIPT_KEYS, "the transcript")
    if transcript["version"] != draw1.VERSION:
        raise VerificationFailed(f"version is not {draw1.VERSION}")
    house_id = _uuid(transcript, "house_id")
    manifest = _object(transcript, "manifest")
    public_key = _check_manifest(transcript, manifest, house_id, transparency_public_key)
    tree_size, root = _check_entry_log(transcript, manifest, house_id, public_key)
    beacon_round, randomness = _check_beacon(transcript, manifest)
    seed = draw1.derive_seed(
        house_id=house_id,
        root=root,
        tree_size=tree_size,
        beacon_round=beacon_round,
        randomness=randomness,
    )
    if _hex(transcript, "seed", size=draw1.HASH_SIZE) != seed:
        raise VerificationFailed("seed is not the seed derived from root, N, round and beacon")
    reserves = _int(transcript, "reserves_requested")
    selection = draw1.select_winners(seed=seed, population=tree_size, reserves=reserves)
    _compare_words(_list(transcript, "words"), selection.words)
    _compare_winners(_list(transcript, "winners"), selection.winners)
    return Verdict(house_id=house_id, tree_size=tree_size, winners=selection.winners)


def _check_manifest(
    transcript: Mapping[str, Any],
    manifest: Mapping[str, Any],
    house_id: uuid.UUID,
    expected_key: bytes | None,
) -> Ed25519PublicKey:
    _exact_keys(manifest, draw1.MANIFEST_KEYS, "the manifest")
    if manifest["version"] != draw1.VERSION:
        raise VerificationFailed(f"manifest version is not {draw1.VERSION}")
    if _uuid(manifest, "house_id", where="manifest") != house_id:
        raise VerificationFailed("the manifest is for another house")
    _int(manifest, "total_tickets", where="manifest")
    if not isinstance(manifest["fallback"], str):
        raise VerificationFailed("manifest.fallback is not a string")
    _check_timeline(manifest)
    key_bytes = _hex(transcript, "transparency_public_key", size=ED25519_PUBLIC_KEY_SIZE)
    if expected_key is not None and not hmac.compare_digest(key_bytes, expected_key):
        raise VerificationFailed("transparency_public_key is not the key you expected")
    public_key = Ed25519PublicKey.from_public_bytes(key_bytes)
    signature = _hex(transcript, "manifest_signature", size=ED25519_SIGNATURE_SIZE)
    if not draw1.verify_manifest(public_key, manifest, signature):
        raise VerificationFailed("manifest_signature does not verify with transparency_public_key")
    return public_key


def _check_entry_log(
    transcript: Mapping[str, Any],
    manifest: Mapping[str, Any],
    house_id: uuid.UUID,
    public_key: Ed25519PublicKey,
) -> tuple[int, bytes]:
    leaves = _leaves(transcript)
    tree_size = _int(transcript, "tree_size")
    if tree_size != len(leaves):
        raise VerificationFailed(f"tree_size is {tree_size} but there are {len(leaves)} leaves")
    if tree_size == 0:
        raise VerificationFailed("a draw needs at least one ticket")
    if tree_size > manifest["total_tickets"]:
        raise VerificationFailed("more leaves than the manifest's total_tickets")
    root = _hex(transcript, "root", size=draw1.HASH_SIZE)
    if not hmac.compare_digest(draw1.merkle_root(leaves), root):
        raise VerificationFailed("root is not the Merkle tree hash of the leaves")
    if not draw1.verify_tree_head(
        public_key,
        house_id=house_id,
        tree_size=tree_size,
        root=root,
        timestamp_ms=_int(transcript, "tree_head_timestamp_ms"),
        signature=_hex(transcript, "tree_head_signature", size=ED25519_SIGNATURE_SIZE),
    ):
        raise VerificationFailed("tree_head_signature does not verify with transparency_public_key")
    return tree_size, root


def _check_beacon(transcript: Mapping[str, Any], manifest: Mapping[str, Any]) -> tuple[int, bytes]:
    beacon = _object(transcript, "beacon")
    _exact_keys(beacon, BEACON_KEYS, "beacon")
    if beacon["chain_hash"] != manifest["beacon_chain_hash"]:
        raise VerificationFailed("beacon.chain_hash is not the manifest's beacon_chain_hash")
    beacon_round = _int(beacon, "round", where="beacon")
    if beacon_round != manifest["beacon_round"]:
        raise VerificationFailed("beacon.round is not the manifest's beacon_round")
    signature = _hex(beacon, "signature", size=BLS_SIGNATURE_SIZE, where="beacon")
    randomness = _hex(beacon, "randomness", size=draw1.HASH_SIZE, where="beacon")
    if draw1.beacon_randomness(signature) != randomness:
        raise VerificationFailed("beacon.randomness is not SHA-256(beacon.signature)")
    verify_beacon_signature(
        beacon_round=beacon_round,
        signature=signature,
        public_key=_hex(manifest, "beacon_public_key", size=BLS_PUBLIC_KEY_SIZE, where="manifest"),
    )
    return beacon_round, randomness


def _check_timeline(manifest: Mapping[str, Any]) -> None:
    # The randomness must not exist before sales close or before the manifest fixed the round,
    # otherwise whoever knew it could still have chosen the entries or the round.
    beacon_round = _int(manifest, "beacon_round", where="manifest")
    period_s = _int(manifest, "beacon_period_s", where="manifest")
    if beacon_round < 1 or period_s < 1:
        raise VerificationFailed("manifest.beacon_round and beacon_period_s must be positive")
    beacon_time_ms = draw1.round_time_ms(
        beacon_round,
        genesis_time_s=_int(manifest, "beacon_genesis_time_s", where="manifest"),
        period_s=period_s,
    )
    if beacon_time_ms < _int(manifest, "sales_close_time_ms", where="manifest"):
        raise VerificationFailed("the manifest's beacon round is produced before sales close")
    if _int(manifest, "published_time_ms", where="manifest") >= beacon_time_ms:
        raise VerificationFailed("the manifest was published after its beacon round existed")


def _compare_words(published: Sequence[Any], expected: Sequence[draw1.Word]) -> None:
    for position, (item, word) in enumerate(zip(published, expected, strict=False)):
        where = f"words[{position}]"
        if not isinstance(item, Mapping):
            raise VerificationFailed(f"{where} is not an object")
        _exact_keys(item, WORD_KEYS, where)
        if (
            item["k"] != word.k
            or isinstance(item["k"], bool)
            or item["word"] != str(word.value)
            or item["accepted"] is not word.accepted
        ):
            raise VerificationFailed(
                f"{where} is not word k={word.k} of the seed stream "
                f"(expected word {word.value}, accepted {str(word.accepted).lower()})"
            )
    if len(published) != len(expected):
        raise VerificationFailed(
            f"{len(published)} words published, the draw takes {len(expected)}"
        )


def _compare_winners(published: Sequence[Any], expected: Sequence[draw1.Winner]) -> None:
    for position, (item, winner) in enumerate(zip(published, expected, strict=False)):
        where = f"winners[{position}]"
        if not isinstance(item, Mapping):
            raise VerificationFailed(f"{where} is not an object")
        _exact_keys(item, WINNER_KEYS, where)
        actual = (item["rank"], item["index"], item["ticket_number"])
        if actual != (winner.rank, winner.index, winner.ticket_number) or any(
            isinstance(value, bool) for value in actual
        ):
            raise VerificationFailed(
                f"{where} is not the recomputed rank {winner.rank}: "
                f"ticket #{winner.ticket_number} (index {winner.index})"
            )
    if len(published) != len(expected):
        raise VerificationFailed(
            f"{len(published)} winners published, the draw selects {len(expected)}"
        )


def _exact_keys(value: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    missing, extra = keys - value.keys(), value.keys() - keys
    if missing:
        raise VerificationFailed(f"{where} lacks {', '.join(sorted(missing))}")
    if extra:
        raise VerificationFailed(f"{where} has unknown keys {', '.join(sorted(extra))}")


def _label(key: str, where: str | None) -> str:
    return f"{where}.{key}" if where else key


def _object(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    item = value[key]
    if not isinstance(item, Mapping):
        raise VerificationFailed(f"{key} is not an object")
    return cast(Mapping[str, Any], item)


def _list(value: Mapping[str, Any], key: str) -> list[Any]:
    item = value[key]
    if not isinstance(item, list):
        raise VerificationFailed(f"{key} is not a list")
    return item


def _int(value: Mapping[str, Any], key: str, *, where: str | None = None) -> int:
    item = value[key]
    if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**64:
        raise VerificationFailed(f"{_label(key, where)} is not an unsigned 64-bit integer")
    return item


def _uuid(value: Mapping[str, Any], key: str, *, where: str | None = None) -> uuid.UUID:
    item = value[key]
    try:
        parsed = uuid.UUID(item) if isinstance(item, str) else None
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != item:
        raise VerificationFailed(f"{_label(key, where)} is not a lowercase UUID")
    return parsed


def _from_hex(item: Any, size: int, label: str) -> bytes:
    # Lowercase only: an upper-cased copy decodes to the same bytes but is not what was published.
    if not isinstance(item, str) or len(item) != 2 * size or item.strip("0123456789abcdef"):
        raise VerificationFailed(f"{label} is not {size} bytes of lowercase hex")
    return bytes.fromhex(item)


def _hex(value: Mapping[str, Any], key: str, *, size: int, where: str | None = None) -> bytes:
    return _from_hex(value[key], size, _label(key, where))


def _leaves(transcript: Mapping[str, Any]) -> list[bytes]:
    return [
        _from_hex(item, draw1.HASH_SIZE, f"leaves[{position}]")
        for position, item in enumerate(_list(transcript, "leaves"))
    ]


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise VerificationFailed("the transcript repeats a key")
    return result


def _refuse_float(text: str) -> NoReturn:
    raise VerificationFailed(f"the transcript holds a non-integer number {text}")


def load_transcript(data: bytes) -> Mapping[str, Any]:
    """Parses transcript JSON strictly: no duplicate keys, no floats, an object at the top."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_refuse_duplicates,
            parse_float=_refuse_float,
            parse_constant=_refuse_float,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationFailed(f"the transcript is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise VerificationFailed("the transcript is not a JSON object")
    return value


def verify_file(path: Path, *, transparency_public_key: bytes | None = None) -> Verdict:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VerificationFailed(f"cannot read {path}: {error.strerror}") from error
    return verify_transcript(load_transcript(data), transparency_public_key=transparency_public_key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m amesa_sdk.verify",
        description="Verify an Amesa DRAW-1 transcript (the JSON served by GetDrawTranscript).",
    )
    parser.add_argument("transcript", type=Path, help="path to the transcript JSON file")
    parser.add_argument(
        "--transparency-key",
        metavar="HEX",
        help="the Ed25519 transparency public key you trust (64 hex characters)",
    )
    args = parser.parse_args(argv)
    try:
        expected_key = (
            None
            if args.transparency_key is None
            else _from_hex(args.transparency_key.lower(), 32, "--transparency-key")
        )
        verdict = verify_file(args.transcript, transparency_public_key=expected_key)
    except VerificationFailed as failure:
        sys.stdout.write(f"FAIL: {failure}\n")
        return 1
    sys.stdout.write(verdict.summary() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
