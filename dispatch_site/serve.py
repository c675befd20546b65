"""``python -m dispatch_site.serve [daphne options] dispatch_site.asgi:application``.

Daphne on uvloop, which drains on SIGTERM (and SIGINT) instead of stopping at once: Daphne's
own handlers (Twisted's) stop the reactor and cancel every request, socket and turn. Here the
first signal runs ``chat.startup.drain`` — no new turns or sockets, ``/health`` 503, running
turns finish (up to ``DISPATCH_DRAIN_SECONDS``), sockets get a reconnect hint — then waits for
the last responses to go out and stops; a second signal stops at once (recovery then seals
the turns that were still running).

The event loop policy must be set before Daphne imports Twisted's asyncio reactor, which
creates the loop at import time. The access log redacts ``?token=`` values
(chat.overrides.access_log).
"""

import asyncio
import logging
import signal

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

from daphne.cli import CommandLineInterface  # noqa: E402
from daphne.server import Server  # noqa: E402
from twisted.internet import reactor  # noqa: E402

log = logging.getLogger("dispatch_site.serve")

RESPONSES_GRACE = 10.0  # seconds for responses in flight after the drain (the last NDJSON lines)


class DrainingServer(Server):
    """Daphne's server with Dispatch's own SIGTERM/SIGINT handling (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.signal_handlers = False  # not Twisted's: they stop the reactor at once
        self._stopping: asyncio.Task | None = None

    def run(self):
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self._stopping is not None:
            log.warning("%s again: stopping now", signal.Signals(signum).name)
            self.stop()
            return
        log.warning("%s: draining, then stopping", signal.Signals(signum).name)
        self._stopping = asyncio.get_event_loop().create_task(self._drain_and_stop())

    async def _drain_and_stop(self) -> None:
        from chat.startup import drain  # Django is set up by now (the application is loaded)

        try:
            await drain()
            await self._responses_sent()
        except Exception:
            log.exception("drain failed: stopping anyway")
        self.stop()

    async def _responses_sent(self) -> None:
        """Wait (a bounded while) for the application instances still running: the last lines
        of NDJSON streams and any request in flight get written."""
        running = [
            instance
            for details in self.connections.values()
            if (instance := details.get("application_instance")) is not None and not instance.done()
        ]
        if running:
            await asyncio.wait(running, timeout=RESPONSES_GRACE)


class DispatchCommandLine(CommandLineInterface):
    server_class = DrainingServer


from chat.overrides import access_log, twisted_write  # noqa: E402

if __name__ == "__main__":
    access_log.install()
    twisted_write.install()
    DispatchCommandLine.entrypoint()
