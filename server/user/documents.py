"""Encrypted storage of identity document files on local disk.

Each file is sealed with AES-GCM by the PII cipher (context "user_identity_documents.file", so
a file cannot be passed off as another column's value) and written under a server-generated name
in one flat directory (AMESA_DOCUMENT_DIR); nothing of the client's file name reaches the disk.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from server.core.crypto import Encrypted, PiiCipher

FILE_CONTEXT = "user_identity_documents.file"


def new_storage_name() -> str:
    return secrets.token_hex(16)


class DocumentStore:
    def __init__(self, cipher: PiiCipher, directory: Path) -> None:
        self._cipher = cipher
        self._directory = directory

    def _path(self, storage_name: str) -> Path:
        if not storage_name.isalnum():  # names are ours (hex), never a path
            raise ValueError("invalid storage name")
        return self._directory / storage_name

    def _write(self, storage_name: str, content: bytes) -> str:
        sealed = self._cipher.encrypt_bytes(content, context=FILE_CONTEXT)
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._path(storage_name)
        temporary = path.with_suffix(".tmp")
        with temporary.open("xb") as handle:
            handle.write(sealed.ciphertext)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        return sealed.key_id

    def _read(self, storage_name: str, key_id: str) -> bytes | None:
        path = self._path(storage_name)
        if not path.exists():
            return None
        ciphertext = path.read_bytes()
        return self._cipher.decrypt_bytes(Encrypted(ciphertext, key_id), context=FILE_CONTEXT)

    def _remove(self, storage_name: str) -> None:
        self._path(storage_name).unlink(missing_ok=True)

    async def write(self, storage_name: str, content: bytes) -> str:
        """Encrypts and stores `content`; returns the key id it was sealed under."""
        return await asyncio.to_thread(self._write, storage_name, content)

    async def read(self, storage_name: str, key_id: str) -> bytes | None:
        """The decrypted file, or None when it was erased."""
        return await asyncio.to_thread(self._read, storage_name, key_id)

    async def remove(self, storage_name: str) -> None:
        await asyncio.to_thread(self._remove, storage_name)
