"""Model output → safe HTML: Markdown (markdown-it-py), highlighted code (Pygments), nh3.

Everything a model writes is untrusted. Raw HTML in the Markdown source is escaped by the
parser (``html: False``) and the produced HTML is then cleaned by nh3 with a short allow-list
(no attributes that run code, no ``hx-*``/``ws-*`` attributes htmx would act on), so model
output stays inert in the page whatever it contains.

Images load by themselves only from this site, ``data:`` URLs and the origins of
``DISPATCH_IMAGE_ORIGINS``. Any other image becomes a link the user may click to open it: an
image that loads on its own would send whatever the model put into its URL (a prompt
injection's stolen data) to that server without the user doing anything.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

import nh3
from django.conf import settings
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")

_TAGS = {
    "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title", "class", "target"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class"},
    "pre": {"class"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
# Only these URL schemes survive in href/src (no javascript: …); data: only in an image's
# src, where markdown-it lets nothing but data:image/(gif|png|jpeg|webp) through.
_URL_SCHEMES = {"http", "https", "mailto", "data"}
# The only values our own renderer puts into these attributes (model text cannot set them).
_FIXED_VALUES = {("a", "class"): "image-link", ("a", "target"): "_blank"}


def _highlight(code: str, language: str, _attrs: str) -> str:
    """Pygments for fenced code with a known language; escaped plain text otherwise."""
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes and wraps the code itself
    return f'<pre class="hl"><code class="language-{html.escape(language)}">' + (
        highlight(code, lexer, _FORMATTER) + "</code></pre>"
    )


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, as origins are written (no default port)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != {"http": 80, "https": 443}[parts.scheme]:
        host += f":{port}"
    return f"{parts.scheme}://{host}"


def image_loads_by_itself(src: str) -> bool:
    """Whether an image URL in model output may load without a click: a path on this site,
    a ``data:`` image, or an origin of DISPATCH_IMAGE_ORIGINS (``//host/…`` is another site)."""
    parts = urlsplit(src)
    if parts.scheme == "data" or (not parts.scheme and not parts.netloc):
        return True
    return _origin(src) in settings.DISPATCH_IMAGE_ORIGINS


def _image(renderer, tokens, idx, options, env) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if image_loads_by_itself(src):
        return renderer.image(tokens, idx, options, env)
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    host = urlsplit(src).hostname or src
    label = f"Image from {host}: {alt}" if alt else f"Image from {host}"
    return (
        f'<a class="image-link" href="{escapeHtml(src)}" target="_blank" '
        f'title="Not loaded: click to open {escapeHtml(src)}">{escapeHtml(label)}</a>'
    )


_MARKDOWN = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
)
_MARKDOWN.add_render_rule("image", _image)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if (tag, attribute) in _FIXED_VALUES:
        return value if value == _FIXED_VALUES[tag, attribute] else None
    if attribute == "href" and value.lower().startswith("data:"):
        return None
    return value


def sanitize(markup: str) -> str:
    """Clean HTML with the transcript's allow-list; links open safely in a new context."""
    return nh3.clean(
        markup,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        attribute_filter=_attribute_filter,
        link_rel="noopener noreferrer nofollow",
    )


def markdown_html(text: str) -> str:
    """Render Markdown from a model (complete or still streaming) to sanitized HTML."""
    return sanitize(_MARKDOWN.render(text))
