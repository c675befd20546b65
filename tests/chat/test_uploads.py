"""What an upload is, by its content (chat.uploads): pure checks on real image bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from chat.errors import InvalidInput, TooLarge
from chat.runtime.attachments import format_bytes
from chat.uploads import MAX_SIDE, check_upload, safe_name
from tests.chat.images import image_of, png_bytes

LIMITS = {"max_bytes": 10 << 20, "max_pixels": 40_000_000}


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def check(name: str, data: bytes, declared: str = ""):
    return check_upload(name=name, declared_type=declared, data=data, **LIMITS)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        (".bashrc", "bashrc"),
        ("..", "attachment"),
        ("", "attachment"),
        ("a\x00b\nc.txt", "a_b_c.txt"),
        ('what?*<>|".txt', "what______.txt"),
        ("é" * 200 + ".txt", "é" * 125 + ".txt"),  # 255 bytes, the suffix kept
    ],
)
def test_safe_names(raw, safe):
    assert safe_name(raw) == safe
    assert len(safe_name(raw).encode()) <= 255


def test_the_content_decides_not_the_name():
    assert check("data.bin", png_bytes(4, 4)).kind == "image"  # a PNG by any name
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert check("logo.svg", svg, "image/svg+xml").kind == "file"  # never rendered, only saved
    with pytest.raises(InvalidInput):
        check("notes.txt", b"plain text", "image/png")  # the declared type claims an image


@pytest.mark.parametrize(
    ("source", "name", "media_type", "stored_name"),
    [
        ("WEBP", "pic.webp", "image/png", "pic.png"),
        ("BMP", "pic.bmp", "image/png", "pic.png"),
        ("GIF", "pic.gif", "image/png", "pic.png"),
        ("PNG", "pic.PNG", "image/png", "pic.png"),
        ("JPEG", "pic.jpeg", "image/jpeg", "pic.jpg"),
    ],
)
def test_every_format_is_stored_as_png_or_jpeg(source, name, media_type, stored_name):
    upload = check(name, encoded(Image.new("RGB", (30, 20), (0, 128, 255)), source))
    assert (upload.media_type, upload.name, upload.width, upload.height) == (
        media_type,
        stored_name,
        30,
        20,
    )
    assert image_of(upload.data).format == media_type.split("/")[1].upper()


def test_an_animation_keeps_its_first_frame_and_transparency_stays():
    frames = [
        Image.new("RGBA", (10, 10), colour) for colour in ((255, 0, 0, 128), (0, 255, 0, 255))
    ]
    data = encoded(frames[0], "PNG", save_all=True, append_images=frames[1:])  # an APNG
    stored = image_of(check("anim.png", data).data)
    assert stored.mode == "RGBA" and stored.getpixel((0, 0)) == (255, 0, 0, 128)
    assert getattr(stored, "n_frames", 1) == 1


def test_a_large_image_is_scaled_to_the_longest_side():
    upload = check("big.png", png_bytes(MAX_SIDE * 2, MAX_SIDE // 2))
    assert (upload.width, upload.height) == (MAX_SIDE, MAX_SIDE // 4)


def test_png_text_chunks_do_not_survive():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "48.85, 2.35")
    data = encoded(Image.new("RGB", (8, 8)), "PNG", pnginfo=info)
    assert b"48.85" in data
    assert b"48.85" not in check("tagged.png", data).data


def test_limits_name_themselves():
    with pytest.raises(TooLarge) as too_large:
        check_upload(name="a.txt", declared_type="", data=b"x" * 11, max_bytes=10, max_pixels=1)
    assert too_large.value.message == (
        "file too large: a.txt is 11 bytes; at most 10 bytes per file"
    )
    with pytest.raises(InvalidInput) as too_many_pixels:
        check_upload(name="p.png", declared_type="", data=png_bytes(10, 10), max_bytes=10**6,
                     max_pixels=99)  # fmt: skip
    assert too_many_pixels.value.message == (
        "file: p.png is too large an image: 10×10 pixels; at most 99 pixels"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1536, "1.5 KiB"), (10188, "9.9 KiB"),
     (12800, "13 KiB"), (10 << 20, "10 MiB"), (None, "unknown size")],
)  # fmt: skip
def test_format_bytes(size, text):
    assert format_bytes(size) == text
