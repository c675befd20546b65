"""run_shell: a ``/bin/sh -c`` command in a bubblewrap sandbox, streamed, with a timeout.

The sandbox (chat/tools/bwrap.py) shows the command the system read-only and the working
directory read-write, and nothing of the server: not its environment, its processes, its files
or (unless the deployment allows it) the network. The shell is PID 1 of a PID namespace of its
own, so when it exits, times out or the turn is stopped (the runtime cancels the task), every
process it started ends with it, ``setsid`` and double forks included.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import Any

from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.base import OUTPUT_CAP, BuiltinTool, ToolFailure, object_schema
from chat.tools.bwrap import MISSING, bwrap_command, find_bwrap, sandbox_env
from chat.tools.sandbox import sandbox_root

READ_SIZE = 4096


class _Collector:
    """Keeps the first OUTPUT_CAP characters of the output and counts the rest."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def add(self, data: str) -> None:
        room = OUTPUT_CAP - self.kept
        self.parts.append(data[:room])
        self.kept += min(len(data), room)
        self.dropped += max(0, len(data) - room)

    def text(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n… [truncated: {self.dropped:,} more characters]"
        return text


class RunShell(BuiltinTool):
    """The run_shell tool, from ToolsConfig: ``run_shell_timeout`` is the default timeout,
    ``run_shell_network`` lets the sandbox use the server's network."""

    concurrency_safe = False

    def __init__(self, default_timeout: float, network: bool = False) -> None:
        self.default_timeout = default_timeout
        self.network = network
        reach = "the network" if network else "no network"
        self.spec = ToolSpec(
            name="run_shell",
            description=(
                "Run a shell command (/bin/sh -c) in the working directory, inside a sandbox: "
                "the system's programs read-only, the working directory read-write (the only "
                f"place where files outlive the call), a private empty /tmp, {reach}. stdout "
                "and stderr are returned together; a non-zero exit status is an error. The "
                "command and everything it starts end when the shell exits, and are killed "
                f"after `timeout` seconds (default {default_timeout:g})."
            ),
            parameters=object_schema(
                {
                    "command": {"type": "string", "description": "The shell command line."},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds."},
                },
                required=("command",),
            ),
        )

    def problem(self) -> str | None:
        """Why run_shell cannot run on this server (no bubblewrap), or None."""
        return MISSING if find_bwrap() is None else None

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        binary = find_bwrap()
        if binary is None:
            raise ToolFailure(MISSING)
        cwd = sandbox_root(ctx.cwd)
        timeout = input.get("timeout", self.default_timeout)
        status, status_write = os.pipe()
        try:
            try:
                argv = await asyncio.to_thread(
                    bwrap_command,
                    binary,
                    cwd,
                    input["command"],
                    network=self.network,
                    status_fd=status_write,
                )
                process, exited = await _spawn(argv, sandbox_env(cwd), status_write)
            finally:
                os.close(status_write)
            return await self._supervise(process, exited, status, ctx, seconds=timeout)
        finally:
            os.close(status)

    async def _supervise(
        self,
        process: asyncio.subprocess.Process,
        exited: asyncio.Future[None],
        status: int,
        ctx: ToolContext,
        *,
        seconds: float,
    ) -> ToolOutcome:
        """Stream the output until the shell exits or ``seconds`` pass; kill what is left."""
        output = _Collector()
        try:
            async with asyncio.timeout(seconds):
                await self._pump(process, exited, output, ctx)
        except TimeoutError:
            return ToolOutcome(
                output.text() + f"\n[timed out after {seconds:g}s; the command was killed]",
                is_error=True,
            )
        finally:
            # Also runs on cancellation (a stopped turn): bubblewrap dies, and with it (by
            # --die-with-parent) the shell, the PID namespace and everything in it.
            _kill_group(process)
            await asyncio.shield(process.wait())
        if b'"exit-code"' not in _read_available(status):
            return ToolOutcome(
                "run_shell: the sandbox (bubblewrap) could not start the command:\n"
                + output.text(),
                is_error=True,
            )
        if process.returncode != 0:
            return ToolOutcome(output.text() + f"\n[exit code {process.returncode}]", is_error=True)
        return ToolOutcome(output.text())

    @staticmethod
    async def _pump(
        process: asyncio.subprocess.Process,
        exited: asyncio.Future[None],
        output: _Collector,
        ctx: ToolContext,
    ) -> None:
        """Stream both pipes until the shell exits, then drain what is left in them."""
        assert process.stdout is not None and process.stderr is not None

        async def pump(stream: asyncio.StreamReader, name: str) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while chunk := await stream.read(READ_SIZE):
                if data := decoder.decode(chunk):
                    output.add(data)
                    await ctx.emit_output(data, name)
            if tail := decoder.decode(b"", final=True):
                output.add(tail)
                await ctx.emit_output(tail, name)

        readers = [
            asyncio.create_task(pump(process.stdout, "stdout")),
            asyncio.create_task(pump(process.stderr, "stderr")),
        ]
        try:
            await exited
            # The kernel ended the sandbox's PID namespace with the shell, so the pipes close;
            # killing the group as well costs nothing.
            _kill_group(process)
            await asyncio.gather(*readers)
        finally:
            for reader in readers:
                reader.cancel()


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Also tells when the shell itself exits (Process.wait() waits for the pipes too)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


def _read_available(fd: int) -> bytes:
    """What the pipe ``fd`` holds now, without waiting (its writers have exited)."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            data += chunk
    return data


async def _spawn(
    argv: Sequence[str], env: dict[str, str], status_fd: int
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    """Start bubblewrap in a new session (so killpg reaches it), ``status_fd`` passed on."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop),
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        pass_fds=(status_fd,),
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
