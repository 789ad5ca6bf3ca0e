"""LotteryService.AddHouseImage, DeleteHouseImage and ReorderHouseImages."""

from __future__ import annotations

import asyncio
import os
import struct
import uuid
import zlib
from pathlib import Path

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from tests.lottery.conftest import Callers, create_house, published_house
from tests.support import failure


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def webp(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.fixture
def media_dir(app: App) -> Path:
    return app.settings.media_dir


async def add(callers: Callers, parent: str, **fields: object) -> pb.HouseImage:
    request = pb.AddHouseImageRequest(parent=parent, alt_text="A view", **fields)  # type: ignore[arg-type]
    image: pb.HouseImage = await callers.stub.AddHouseImage(request, metadata=callers.admin)
    return image


@pytest.mark.parametrize(
    ("data", "content_type", "size"),
    [
        (png(3, 2), "image/png", (3, 2)),
        (jpeg(640, 480), "image/jpeg", (640, 480)),
        (webp(800, 600), "image/webp", (800, 600)),
    ],
    ids=["png", "jpeg", "webp"],
)
async def test_an_upload_is_typed_by_its_bytes_and_stored_under_a_server_name(
    callers: Callers, media_dir: Path, data: bytes, content_type: str, size: tuple[int, int]
) -> None:
    house = await create_house(callers)

    image = await add(callers, house.name, image_data=data)

    assert image.name.startswith(house.name + "/images/")
    assert image.content_type == content_type
    assert (image.width_px, image.height_px) == size
    assert image.size_bytes == len(data)
    assert image.position == 0
    storage_name = image.uri.rsplit("/", 1)[1]
    assert len(storage_name) > 32  # a server-made name (uuid + extension), not the client's
    assert await asyncio.to_thread((media_dir / storage_name).read_bytes) == data
    got = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name), metadata=callers.admin)
    assert list(got.images) == [image]


async def test_bytes_of_another_type_are_unsupported(callers: Callers) -> None:
    house = await create_house(callers)
    for data in (b"%PDF-1.7 not an image", b"GIF89a......"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await add(callers, house.name, image_data=data)
        assert failure(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
        assert failure(raised.value).reason == "IMAGE_TYPE_UNSUPPORTED"


async def test_a_truncated_or_huge_image_is_unreadable(callers: Callers) -> None:
    house = await create_house(callers)
    huge = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 20_000, 10_000)
    )
    for data in (b"\x89PNG\r\n\x1a\n\x00", huge):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await add(callers, house.name, image_data=data)
        assert failure(raised.value).reason == "IMAGE_UNREADABLE"


async def test_a_url_on_an_allowed_host_is_stored_as_given(callers: Callers) -> None:
    house = await create_house(callers)
    uri = f"https://images.amesa.io/{uuid.uuid4().hex}.jpg"

    image = await add(callers, house.name, image_uri=uri)

    assert image.uri == uri
    assert (image.content_type, image.width_px, image.size_bytes) == ("", 0, 0)


async def test_a_url_on_another_host_is_refused(callers: Callers) -> None:
    house = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await add(callers, house.name, image_uri="https://evil.example/x.jpg")
    assert failure(raised.value).reason == "IMAGE_HOST_NOT_ALLOWED"


async def test_positions_insert_delete_and_reorder(callers: Callers) -> None:
    house = await create_house(callers)
    a = await add(callers, house.name, image_data=png(1, 1))
    b = await add(callers, house.name, image_data=png(2, 2))
    c = await add(callers, house.name, image_data=png(3, 3), position=0)  # new cover

    got = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name), metadata=callers.admin)
    assert [(i.name, i.position) for i in got.images] == [(c.name, 0), (a.name, 1), (b.name, 2)]

    reordered = await callers.stub.ReorderHouseImages(
        pb.ReorderHouseImagesRequest(parent=house.name, images=[b.name, c.name, a.name]),
        metadata=callers.admin,
    )
    assert [(i.name, i.position) for i in reordered.images] == [
        (b.name, 0),
        (c.name, 1),
        (a.name, 2),
    ]

    await callers.stub.DeleteHouseImage(
        pb.DeleteHouseImageRequest(name=c.name), metadata=callers.admin
    )
    got = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name), metadata=callers.admin)
    assert [(i.name, i.position) for i in got.images] == [(b.name, 0), (a.name, 1)]


async def test_concurrent_additions_get_distinct_positions(callers: Callers) -> None:
    house = await create_house(callers)
    added = await asyncio.gather(
        *(add(callers, house.name, image_data=png(1, 1)) for _ in range(5))
    )
    assert sorted(i.position for i in added) == [0, 1, 2, 3, 4]


async def test_reorder_must_be_an_exact_permutation(callers: Callers) -> None:
    house = await create_house(callers)
    other = await create_house(callers)
    a = await add(callers, house.name, image_data=png(1, 1))
    b = await add(callers, house.name, image_data=png(1, 1))
    foreign = await add(callers, other.name, image_data=png(1, 1))

    for names in (
        [a.name],
        [a.name, foreign.name],
        [a.name, b.name, foreign.name],
        [a.name, f"{house.name}/images/{uuid.uuid4()}"],
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await callers.stub.ReorderHouseImages(
                pb.ReorderHouseImagesRequest(parent=house.name, images=names),
                metadata=callers.admin,
            )
        error = failure(raised.value)
        assert error.reason == "IMAGE_ORDER_MISMATCH"
        assert error.error_info.metadata["expected_count"] == "2"


async def test_deleting_an_unknown_image_is_not_found(callers: Callers) -> None:
    house = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.DeleteHouseImage(
            pb.DeleteHouseImageRequest(name=f"{house.name}/images/{uuid.uuid4()}"),
            metadata=callers.admin,
        )
    assert failure(raised.value).reason == "IMAGE_NOT_FOUND"


async def test_the_last_image_of_a_published_house_is_required(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.DeleteHouseImage(
            pb.DeleteHouseImageRequest(name=house.images[0].name), metadata=callers.admin
        )
    assert failure(raised.value).code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(raised.value).reason == "IMAGE_REQUIRED"


async def test_the_fiftieth_image_is_the_last(callers: Callers) -> None:
    house = await create_house(callers)
    for _ in range(50):
        await add(callers, house.name, image_uri="https://images.amesa.io/x.jpg")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await add(callers, house.name, image_uri="https://images.amesa.io/x.jpg")
    assert failure(raised.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure(raised.value).reason == "IMAGE_LIMIT_REACHED"


async def test_an_unknown_house_is_not_found_and_leaves_no_file(
    callers: Callers, media_dir: Path
) -> None:
    await asyncio.to_thread(media_dir.mkdir, parents=True, exist_ok=True)
    before = set(await asyncio.to_thread(os.listdir, media_dir))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await add(callers, f"houses/{uuid.uuid4()}", image_data=png(1, 1))
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"
    # The upload was written before the transaction; the failed call removed it again.
    assert set(await asyncio.to_thread(os.listdir, media_dir)) == before
