"""The DRAW-1 transparency key: loaded from AMESA_TRANSPARENCY_KEY_FILE, or (development and
tests only; production refuses to start without it) an ephemeral key with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.app import signing_key
from server.core.tokens import write_private_key
from server.lottery.entrylog import public_key_bytes

VARIABLE = "AMESA_TRANSPARENCY_KEY_FILE"


def test_the_configured_key_file_is_loaded(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "transparency.pem"
    write_private_key(path, key)

    loaded = signing_key(path, variable=VARIABLE)

    assert public_key_bytes(loaded) == public_key_bytes(key)


def test_without_a_key_file_an_ephemeral_key_is_used_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        first = signing_key(None, variable=VARIABLE)
        second = signing_key(None, variable=VARIABLE)

    assert public_key_bytes(first) != public_key_bytes(second)
    assert "AMESA_TRANSPARENCY_KEY_FILE is not set" in caplog.text
