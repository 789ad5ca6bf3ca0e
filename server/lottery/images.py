"""House images: uploads (type sniffed from the bytes, stored on disk under a server-generated
name) or https URLs on an allow-list (stored as given, never fetched); ordering and deletion.

Positions are dense (0..n-1, 0 the cover). Every change locks the house row first, so two admins
editing the images of one house take turns and positions never collide; the `(house_id,
position)` unique constraint is deferred, so shifting positions inside a transaction is fine.
"""

from __future__ import annotations

import asyncio
import os
import struct
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_audit
from server.core.context import Principal
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from server.lottery.catalogue import house_not_found
from server.lottery.models import House, HouseImage, HouseState

MAX_IMAGES = 50
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 100_000_000
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


@dataclass(frozen=True)
class Sniffed:
    content_type: str
    width_px: int
    height_px: int


@dataclass(frozen=True)
class ImageSource:
    """Where a new image comes from: a stored upload or an external URL."""

    storage_name: str | None = None
    source_uri: str | None = None
    content_type: str | None = None
    width_px: int = 0
    height_px: int = 0
    size_bytes: int = 0


def _unsupported() -> InvalidArgument:
    return InvalidArgument(
        "IMAGE_TYPE_UNSUPPORTED",
        "the image must be a JPEG, PNG or WebP file",
        violations=[FieldViolation("image_data", "not a JPEG, PNG or WebP image")],
    )


def _unreadable(why: str) -> InvalidArgument:
    return InvalidArgument(
        "IMAGE_UNREADABLE",
        f"the image cannot be read: {why}",
        violations=[FieldViolation("image_data", why)],
    )


def _jpeg_size(data: bytes) -> tuple[int, int]:
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            raise _unreadable("corrupt JPEG marker")
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        is_frame = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if is_frame and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    raise _unreadable("no JPEG frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise _unreadable("unknown WebP layout")


def sniff(data: bytes) -> Sniffed:
    """The type and pixel size of an image, from its bytes alone (never from a name)."""
    if data.startswith(b"\xff\xd8\xff"):
        content_type = "image/jpeg"
        width, height = _jpeg_size(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        content_type = "image/png"
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise _unreadable("no PNG header")
        width, height = struct.unpack(">II", data[16:24])
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        content_type = "image/webp"
        width, height = _webp_size(data)
    else:
        raise _unsupported()
    if width <= 0 or height <= 0:
        raise _unreadable("zero width or height")
    if width * height > MAX_PIXELS:
        raise _unreadable("more than 100 megapixels")
    return Sniffed(content_type=content_type, width_px=width, height_px=height)


def _write(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, directory / name)


async def store_upload(data: bytes, *, media_dir: Path) -> ImageSource:
    """Checks an upload and writes it to the media directory under a fresh server-chosen name
    (before any transaction: disk I/O does not hold a database connection)."""
    if len(data) > MAX_BYTES:
        raise InvalidArgument(
            "INVALID_REQUEST",
            "image_data is larger than 10 MiB",
            violations=[FieldViolation("image_data", "at most 10 MiB")],
        )
    sniffed = sniff(data)
    name = f"{uuid.uuid4().hex}.{_EXTENSIONS[sniffed.content_type]}"
    await asyncio.to_thread(_write, media_dir, name, data)
    return ImageSource(
        storage_name=name,
        content_type=sniffed.content_type,
        width_px=sniffed.width_px,
        height_px=sniffed.height_px,
        size_bytes=len(data),
    )


def external_source(uri: str, *, allowed_hosts: frozenset[str]) -> ImageSource:
    host = (urlsplit(uri).hostname or "").lower()
    if host not in allowed_hosts:
        raise InvalidArgument(
            "IMAGE_HOST_NOT_ALLOWED",
            f"images may only be linked from {', '.join(sorted(allowed_hosts))}",
            violations=[FieldViolation("image_uri", "host not on the allow-list")],
        )
    return ImageSource(source_uri=uri)


@asynccontextmanager
async def staged_source(
    *,
    data: bytes | None,
    uri: str,
    media_dir: Path,
    allowed_hosts: frozenset[str],
) -> AsyncIterator[ImageSource]:
    """The image's source for the block that records it: an upload is written first (disk I/O
    outside the transaction) and removed again if the block fails, so no file is orphaned."""
    if data is None:
        yield external_source(uri, allowed_hosts=allowed_hosts)
        return
    source = await store_upload(data, media_dir=media_dir)
    try:
        yield source
    except BaseException:
        await remove_file(source.storage_name, media_dir=media_dir)
        raise


async def remove_file(storage_name: str | None, *, media_dir: Path) -> None:
    """Deletes a stored upload once the row that pointed at it is gone (after commit)."""
    if storage_name is not None:
        await asyncio.to_thread((media_dir / storage_name).unlink, missing_ok=True)


async def _lock_house(session: AsyncSession, house_id: uuid.UUID) -> HouseState:
    state = await session.scalar(
        select(House.state)
        .where(House.id == house_id, House.delete_time.is_(None))
        .with_for_update()
    )
    if state is None:
        raise house_not_found()
    return state


async def _images(session: AsyncSession, house_id: uuid.UUID) -> list[HouseImage]:
    rows = await session.scalars(
        select(HouseImage)
        .where(HouseImage.house_id == house_id)
        .order_by(HouseImage.position)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def add_image(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    source: ImageSource,
    alt_text: str,
    position: int | None,
    actor: Principal,
) -> HouseImage:
    await _lock_house(session, house_id)
    count = await session.scalar(
        select(func.count()).select_from(HouseImage).where(HouseImage.house_id == house_id)
    )
    count = int(count or 0)
    if count >= MAX_IMAGES:
        raise ResourceExhausted("IMAGE_LIMIT_REACHED", f"a house has at most {MAX_IMAGES} images")
    at = count if position is None else min(position, count)
    await session.execute(
        update(HouseImage)
        .where(HouseImage.house_id == house_id, HouseImage.position >= at)
        .values(position=HouseImage.position + 1)
    )
    image = HouseImage(
        house_id=house_id,
        storage_name=source.storage_name,
        source_uri=source.source_uri,
        alt_text=alt_text,
        position=at,
        content_type=source.content_type,
        width_px=source.width_px,
        height_px=source.height_px,
        size_bytes=source.size_bytes,
    )
    session.add(image)
    await session.flush()
    await session.refresh(image)
    await record_audit(
        session,
        actor=actor,
        action="lottery.house.image.add",
        resource_name=f"houses/{house_id}/images/{image.id}",
        after={
            "position": at,
            "content_type": source.content_type,
            "size_bytes": source.size_bytes,
            "source_uri": source.source_uri,
        },
    )
    return image


async def delete_image(
    session: AsyncSession, *, house_id: uuid.UUID, image_id: uuid.UUID, actor: Principal
) -> str | None:
    """Deletes the image and closes the gap; returns the stored file name to remove."""
    state = await _lock_house(session, house_id)
    images = await _images(session, house_id)
    image = next((i for i in images if i.id == image_id), None)
    if image is None:
        raise NotFound("IMAGE_NOT_FOUND", "the house has no such image")
    if len(images) == 1 and state is not HouseState.DRAFT:
        raise FailedPrecondition(
            "IMAGE_REQUIRED",
            "a published house keeps at least one image",
            metadata={"subject": "images"},
        )
    await session.execute(delete(HouseImage).where(HouseImage.id == image_id))
    await session.execute(
        update(HouseImage)
        .where(HouseImage.house_id == house_id, HouseImage.position > image.position)
        .values(position=HouseImage.position - 1)
    )
    await record_audit(
        session,
        actor=actor,
        action="lottery.house.image.delete",
        resource_name=f"houses/{house_id}/images/{image_id}",
        before={"position": image.position, "source_uri": image.source_uri},
    )
    return image.storage_name


async def reorder_images(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    image_ids: Sequence[uuid.UUID | None],
    actor: Principal,
) -> list[HouseImage]:
    """Sets the order; `image_ids` must be a permutation of the house's images (None stands for
    a name of another house)."""
    await _lock_house(session, house_id)
    images = await _images(session, house_id)
    current = [image.id for image in images]
    if len(image_ids) != len(current) or set(image_ids) != set(current):
        raise InvalidArgument(
            "IMAGE_ORDER_MISMATCH",
            f"images must name each of the house's {len(current)} images exactly once",
            violations=[FieldViolation("images", "not a permutation of the house's images")],
            metadata={"expected_count": str(len(current))},
        )
    for position, image_id in enumerate(image_ids):
        await session.execute(
            update(HouseImage).where(HouseImage.id == image_id).values(position=position)
        )
    await record_audit(
        session,
        actor=actor,
        action="lottery.house.image.reorder",
        resource_name=f"houses/{house_id}",
        before={"images": [str(i) for i in current]},
        after={"images": [str(i) for i in image_ids]},
    )
    return await _images(session, house_id)
