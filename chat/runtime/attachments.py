"""Attachment chunks as a model reads them (docs/protocol.md#21-chunk-types).

A user message may carry ``image`` and ``file`` chunks after its text. The log holds only their
description (name, media type, size, dimensions, attachment id), never their bytes. Before a
request goes to a provider, the service that runs the turn (chat.services.vision) copies the
image chunks and adds what the model can take of each, in keys that are never stored:

- ``data`` (base64) and ``mediaType``: the image itself, for a model with vision;
- ``description`` and ``describedBy``: what a vision model wrote about it, for a model without;
- ``unavailable``: the image is gone (its conversation was imported, its file deleted);
- ``omitted``: an older image left out of a long conversation's request.

The provider adapters turn an image with ``data`` into their image part or block, and every
other attachment chunk into text (``attachment_text``), so a model always knows an attachment
was there and a file's path in the working directory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ATTACHMENT_TYPES = frozenset({"image", "file"})


@dataclass(frozen=True)
class ImagePart:
    """An image as a provider takes it: its media type and its bytes in base64."""

    media_type: str
    data: str

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data}"


Part = str | ImagePart


def image_part(chunk: Mapping[str, Any]) -> ImagePart | None:
    """The image of an ``image`` chunk that carries its bytes; None for any other chunk."""
    data = chunk.get("data")
    if chunk.get("type") != "image" or not isinstance(data, str) or not data:
        return None
    return ImagePart(str(chunk.get("mediaType") or "image/png"), data)


def user_parts(chunks: Iterable[Mapping[str, Any]]) -> list[Part]:
    """A user message as text and images, in order; attachments without bytes become text.

    Empty texts are left out, so a message of one image is that image alone.
    """
    parts: list[Part] = []
    for chunk in chunks:
        kind = chunk.get("type")
        image = image_part(chunk)
        if image is not None:
            parts.append(image)
            continue
        if kind in ("text", "system"):
            text = str(chunk.get("text", ""))
        elif kind in ATTACHMENT_TYPES:
            text = attachment_text(chunk)
        else:
            continue
        if text:
            parts.append(text)
    return parts


def joined_text(parts: Iterable[Part]) -> str:
    """The text parts of a message, a blank line between them (images left out)."""
    return "\n\n".join(part for part in parts if isinstance(part, str))


def attachment_text(chunk: Mapping[str, Any]) -> str:
    """What a model reads for an attachment it does not get as an image.

    A file: its name, size and where it was saved in the working directory. An image: a
    placeholder naming it, with the description a vision model wrote when there is one.
    """
    name = str(chunk.get("name") or "unnamed")
    if chunk.get("type") == "file":
        return (
            f"[Attached file: {name} ({format_bytes(chunk.get('size'))}, "
            f"{chunk.get('mediaType') or 'unknown type'}), saved as {chunk.get('path') or name} "
            "in the working directory]"
        )
    label = f"{name}, {_dimensions(chunk)}".rstrip(", ")
    if chunk.get("unavailable"):
        return f"[Image: {label}. The image is no longer available.]"
    if chunk.get("omitted"):
        return f"[Image: {label}. Left out: only the most recent images are sent.]"
    description = chunk.get("description")
    if isinstance(description, str) and description.strip():
        by = chunk.get("describedBy") or "a vision model"
        return f"[Image: {label}. You cannot see images; {by} described it: {description.strip()}]"
    return f"[Image: {label}. You cannot see images, so only its name and size are given.]"


def attachment_label(chunk: Mapping[str, Any]) -> str:
    """One line naming an attachment chunk for people: ``image cat.png (PNG, 640×480, 12 KiB)``."""
    kind = "file" if chunk.get("type") == "file" else "image"
    details = [_format_name(chunk.get("mediaType"))]
    if kind == "image":
        details.append(_dimensions(chunk))
    details.append(format_bytes(chunk.get("size")))
    label = f"{kind} {chunk.get('name') or 'unnamed'} ({', '.join(d for d in details if d)})"
    if kind == "file" and chunk.get("path"):
        label += f" → {chunk['path']}"
    return label


def format_bytes(size: object) -> str:
    """``512 bytes``, ``1.5 KiB``, ``10 MiB``: binary units, one decimal below 10, rounded
    half up."""
    if not isinstance(size, int) or size < 0:
        return "unknown size"
    if size < 1024:
        return f"{size} byte{'s' if size != 1 else ''}"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    text = f"{value:.1f}".removesuffix(".0") if value < 9.95 else str(math.floor(value + 0.5))
    return f"{text} {unit}"


def _dimensions(chunk: Mapping[str, Any]) -> str:
    width, height = chunk.get("width"), chunk.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return f"{width}×{height}"
    return ""


def _format_name(media_type: object) -> str:
    if not isinstance(media_type, str) or not media_type:
        return ""
    subtype = media_type.partition("/")[2]
    return {"jpeg": "JPEG", "png": "PNG", "octet-stream": ""}.get(subtype, subtype)
