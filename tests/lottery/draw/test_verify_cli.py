"""`python -m amesa_sdk.verify transcript.json` end to end, in a separate process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from server.lottery.draw import protocol
from tests.lottery.draw.conftest import TRANSPARENCY_KEY, public_key_bytes


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amesa_sdk.verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _write(path: Path, transcript: dict[str, Any]) -> Path:
    path.write_bytes(protocol.canonical_json(transcript))
    return path


def test_cli_passes_a_genuine_transcript(tmp_path: Path, transcript: dict[str, Any]) -> None:
    path = _write(tmp_path / "transcript.json", transcript)
    winner = transcript["winners"][0]["ticket_number"]
    result = _run(path, "--transparency-key", public_key_bytes(TRANSPARENCY_KEY).hex())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASS: ")
    assert f"winning ticket #{winner} of 37" in result.stdout


def test_cli_fails_a_tampered_transcript(tmp_path: Path, transcript: dict[str, Any]) -> None:
    transcript["winners"][0]["ticket_number"] += 1
    result = _run(_write(tmp_path / "transcript.json", transcript))
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: winners[0] is not the recomputed rank 0")


def test_cli_fails_another_transparency_key(tmp_path: Path, transcript: dict[str, Any]) -> None:
    result = _run(_write(tmp_path / "t.json", transcript), "--transparency-key", "ab" * 32)
    assert result.returncode == 1
    assert result.stdout == "FAIL: transparency_public_key is not the key you expected\n"


def test_cli_fails_a_missing_file(tmp_path: Path) -> None:
    result = _run(tmp_path / "absent.json")
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: cannot read")


def test_cli_fails_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "transcript.json"
    path.write_text("hello")
    result = _run(path)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: the transcript is not JSON")


def test_verifier_imports_nothing_from_the_server() -> None:
    check = (
        "import sys, amesa_sdk.verify, amesa_sdk.draw1;"
        "bad = [m for m in sys.modules if m == 'server' or m.startswith('server.')];"
        "sys.exit(f'imports {bad}' if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
