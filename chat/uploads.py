"""What an uploaded file is, decided by its content: an image (Pillow decodes it) or a file.

- An image is decoded by Pillow, limited to the formats every provider can be given once
  converted (PNG, JPEG, GIF, WebP, BMP; never EPS or the like, which would start other
  programs), and refused when it has more pixels than allowed before anything is decoded (a
  decompression bomb is a small file of huge dimensions). It is then **re-encoded**: turned
  upright by its EXIF orientation, scaled down to ``MAX_SIDE`` pixels on its longer side, and
  saved anew as JPEG (from a JPEG) or PNG (from anything else; the first frame of an
  animation), so no metadata — EXIF with GPS positions, XMP, comments — survives. Only the
  re-encoded image is kept.
- A file whose name or declared type claims an image but that Pillow cannot decode is refused
  (a PHP script named ``photo.png``): no content is trusted by its name.
- Anything else is a file for the agent's tools, kept byte for byte.

Everything here is pure (no Django, no I/O): ``check_upload`` takes the bytes and returns what
to store, or raises chat.errors.InvalidInput / TooLarge with a message that names the limit.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import re
import warnings
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image, ImageOps, UnidentifiedImageError

from chat.errors import InvalidInput, TooLarge
from chat.runtime.attachments import format_bytes

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
# Names that claim an image (a file named so must decode as one).
IMAGE_SUFFIXES = frozenset(
    {
        ".png",
        ".apng",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".gif",
        ".webp",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
        ".ico",
    }
)
MAX_SIDE = 2048  # pixels on the longer side of a stored image (what providers use at most)
JPEG_QUALITY = 90
NAME_MAX_BYTES = 255
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


@dataclass(frozen=True)
class Upload:
    """A checked upload: what to store and how to describe it."""

    kind: str  # "image" | "file"
    name: str
    media_type: str
    data: bytes
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_upload(
    *, name: str, declared_type: str, data: bytes, max_bytes: int, max_pixels: int
) -> Upload:
    """The upload as it will be stored: an image re-encoded, or a file as it came.

    Raises TooLarge (over ``max_bytes``) or InvalidInput (empty, not the image its name says,
    more than ``max_pixels`` pixels, damaged) — each message names the file and the limit.
    """
    name = safe_name(name)
    if len(data) > max_bytes:
        raise too_large(name, len(data), max_bytes)
    if not data:
        raise InvalidInput(f"{name} is empty (0 bytes)", field="file")
    image = _open_image(name, data, max_pixels)
    if image is None:
        if _claims_image(name, declared_type):
            raise InvalidInput(
                f"{name} is not a PNG, JPEG, GIF, WebP or BMP image (its content was checked, "
                "not its name)",
                field="file",
            )
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Upload("file", name, media_type, data)
    return _reencoded(name, image, max_bytes)


def too_large(name: str, size: int, max_bytes: int) -> TooLarge:
    limit = format_bytes(max_bytes)
    if max_bytes >= 1024:
        limit += f" ({max_bytes:,} bytes)"
    return TooLarge(f"file too large: {name} is {size:,} bytes; at most {limit} per file")


def safe_name(raw: str) -> str:
    """A file name fit for a directory: the last path part, no control or reserved characters,
    no leading dots (no hidden files, no ``..``), at most 255 bytes with its suffix kept."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base).strip().lstrip(".").strip()
    if not base:
        return "attachment"
    if len(base.encode()) > NAME_MAX_BYTES:
        suffix = PurePath(base).suffix
        if len(suffix.encode()) > 16:
            suffix = ""
        stem = base[: len(base) - len(suffix)] if suffix else base
        while len((stem + suffix).encode()) > NAME_MAX_BYTES:
            stem = stem[:-1]
        base = stem + suffix
    return base


def _claims_image(name: str, declared_type: str) -> bool:
    declared = declared_type.split(";")[0].strip().lower()
    named = PurePath(name).suffix.lower() in IMAGE_SUFFIXES
    return named or (declared.startswith("image/") and declared != "image/svg+xml")


def _open_image(name: str, data: bytes, max_pixels: int) -> Image.Image | None:
    """The decoded first frame, or None when the content is no image of IMAGE_FORMATS."""
    with warnings.catch_warnings():
        # Pillow warns of (and past twice its own limit refuses) a decompression bomb.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInput(
                f"{name} is too large an image: at most {max_pixels:,} pixels", field="file"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            return None
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidInput(
                f"{name} is too large an image: {width:,}×{height:,} pixels; at most "
                f"{max_pixels:,} pixels",
                field="file",
            )
        try:
            image.seek(0)
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInput(
                f"{name} is too large an image: at most {max_pixels:,} pixels", field="file"
            ) from None
        except Exception:  # truncated, damaged, a lying header: Pillow's errors vary
            raise InvalidInput(
                f"{name} is a damaged {image.format} image and cannot be read", field="file"
            ) from None
    return image


def _reencoded(name: str, image: Image.Image, max_bytes: int) -> Upload:
    source_format = image.format
    image = ImageOps.exif_transpose(image)
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if source_format == "JPEG" and not alpha:
        data, media_type = _encode(image.convert("RGB"), "JPEG"), "image/jpeg"
    else:
        mode = image.mode if image.mode in ("RGB", "RGBA", "L", "LA") else None
        flat = image if mode else image.convert("RGBA" if alpha else "RGB")
        data, media_type = _encode(flat, "PNG"), "image/png"
        if len(data) > max_bytes and not alpha:  # a photo saved as PNG can grow a lot
            data, media_type = _encode(flat.convert("RGB"), "JPEG"), "image/jpeg"
    suffix = ".jpg" if media_type == "image/jpeg" else ".png"
    stored_name = (
        safe_name(PurePath(name).stem + suffix) if PurePath(name).stem else "image" + suffix
    )
    if len(data) > max_bytes:
        raise too_large(stored_name, len(data), max_bytes)
    return Upload("image", stored_name, media_type, data, image.width, image.height)


def _encode(image: Image.Image, image_format: str) -> bytes:
    """The image saved anew, with none of the source's metadata: Pillow writes some of what
    the source had (a JPEG comment, ICC profile) from ``info``, so only what the pixels need
    is left there (the colour profile, a PNG's transparent colour)."""
    image.info = {k: v for k, v in image.info.items() if k in ("icc_profile", "transparency")}
    out = io.BytesIO()
    if image_format == "JPEG":
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()
