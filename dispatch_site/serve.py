"""``python -m dispatch_site.serve [daphne options] dispatch_site.asgi:application``.

Daphne on uvloop: the event loop policy must be set before Daphne imports Twisted's asyncio
reactor, which creates the loop at import time. The access log redacts ``?token=`` values
(chat.overrides.access_log).
"""

import asyncio

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

from daphne.cli import CommandLineInterface  # noqa: E402

from chat.overrides import access_log  # noqa: E402

if __name__ == "__main__":
    access_log.install()
    CommandLineInterface.entrypoint()
