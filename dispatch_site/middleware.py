"""The innermost middleware, which decides whether Django runs the chain synchronously.

Django runs each middleware in the mode the one inside it runs in, when it can. WhiteNoise
is synchronous only; Django's own middleware (``MiddlewareMixin``) runs either way, but in the
asynchronous mode sends each of its ``process_request`` and ``process_response`` hooks to the
request's thread and back on its own: a page took 16 round trips between the event loop and
a thread, an API call 15. With the innermost synchronous, the whole chain runs in the
request's thread in one go, as under WSGI, and an asynchronous view (``POST /chat``) is
called once from it: 6 and 5 round trips (docs/benchmarks.md, finding 23).
"""

from __future__ import annotations

from django_htmx.middleware import HtmxMiddleware as _HtmxMiddleware


class HtmxMiddleware(_HtmxMiddleware):
    """django-htmx's middleware (``request.htmx``), synchronous only."""

    async_capable = False
