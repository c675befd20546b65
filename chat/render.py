"""Model output → safe HTML: Markdown (markdown-it-py), highlighted code (Pygments), nh3.

Everything a model writes is untrusted. Raw HTML in the Markdown source is escaped by the
parser (``html: False``) and the produced HTML is then cleaned by nh3 with a short allow-list
(no attributes that run code, no ``hx-*``/``ws-*`` attributes htmx would act on), so model
output stays inert in the page whatever it contains.
"""

from __future__ import annotations

import html

import nh3
from markdown_it import MarkdownIt
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
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class"},
    "pre": {"class"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
# Only these URL schemes survive in href/src (no javascript:, data: …).
_URL_SCHEMES = {"http", "https", "mailto"}


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


_MARKDOWN = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
)


def sanitize(markup: str) -> str:
    """Clean HTML with the transcript's allow-list; links open safely in a new context."""
    return nh3.clean(
        markup,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def markdown_html(text: str) -> str:
    """Render Markdown from a model (complete or still streaming) to sanitized HTML."""
    return sanitize(_MARKDOWN.render(text))
