"""Daphne's requests without Twisted's form parsing: ``daphne.http_protocol.WebRequest``
(daphne 4.2, Twisted 26), replaced by a subclass that turns the parsing off.

Twisted's ``Request.requestReceived`` parses the body of a ``multipart/form-data`` POST into
``request.args`` — all of it, with the ``email`` parser, on the reactor thread — and answers a
bare 400 itself (no body, no JSON) when that fails. Daphne never reads ``args``: it hands the
raw body to the ASGI application, and Django parses it again. So every attachment upload was
parsed twice, the first time blocking the event loop (0.8 s for 10 MB, every streaming turn of
the worker stalled meanwhile), and a malformed one never reached the API's JSON errors.
``parsePOSTFormSubmission=False`` is Twisted's own switch for this. Daphne's ``HTTPFactory``
builds each connection's requests from the module's ``WebRequest``, so that name is replaced.
"""

from __future__ import annotations

from daphne import http_protocol


class UnparsedWebRequest(http_protocol.WebRequest):
    """Daphne's WebRequest, with Twisted's POST body parsing off."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


_UPSTREAM = UnparsedWebRequest.__base__  # Daphne's own, even once install() replaced it


def install() -> None:
    """Serve every later connection's requests with UnparsedWebRequest (idempotent)."""
    http_protocol.WebRequest = UnparsedWebRequest
