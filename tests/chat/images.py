"""Real image files for the attachment tests, made with Pillow (and one by hand: a bomb)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def png_bytes(width: int = 40, height: int = 30, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg_with_gps(width: int = 64, height: int = 48) -> bytes:
    """A JPEG a phone could have taken: GPS position in its EXIF, a comment, turned on its
    side by its orientation tag (6: rotate 90° clockwise to view)."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(
        out, "JPEG", exif=exif.tobytes(), comment=b"taken at home"
    )
    return out.getvalue()


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A decompression bomb: a valid 1-bit PNG of ``width × height`` black pixels (400
    million by default), compressed to some 50 KB; decoded it would take gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + the row's bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
