"""run_shell: a ``/bin/sh -c`` command in the working directory, streamed, with a timeout.

The command runs in its own process group so that a timeout, a stopped turn (the runtime
cancels the task) or the shell's own exit kills every process it started, not just the shell.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from typing import Any

from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.base import OUTPUT_CAP, BuiltinTool, object_schema
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
    """The run_shell tool; ``default_timeout`` comes from ToolsConfig.run_shell_timeout."""

    concurrency_safe = False

    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout
        self.spec = ToolSpec(
            name="run_shell",
            description=(
                "Run a shell command (/bin/sh -c) in the working directory. stdout and stderr "
                "are returned together; a non-zero exit status is an error. The command and "
                f"everything it starts are killed after `timeout` seconds (default "
                f"{default_timeout:g})."
            ),
            parameters=object_schema(
                {
                    "command": {"type": "string", "description": "The shell command line."},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds."},
                },
                required=("command",),
            ),
        )

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        cwd = sandbox_root(ctx.cwd)
        timeout = input.get("timeout", self.default_timeout)
        process, exited = await _spawn(input["command"], cwd)
        output = _Collector()
        try:
            async with asyncio.timeout(timeout):
                await self._pump(process, exited, output, ctx)
        except TimeoutError:
            return ToolOutcome(
                output.text() + f"\n[timed out after {timeout:g}s; the command was killed]",
                is_error=True,
            )
        finally:
            # Also runs on cancellation (a stopped turn): nothing the command started survives.
            _kill_group(process)
            await asyncio.shield(process.wait())
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
            # Background children may still hold the pipes open; they go with the shell.
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


# The shell sees a plain environment, never the server's secrets (API keys, SECRET_KEY,
# DATABASE_URL …) that live in the server's own environment.
_PASSED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
)


def _shell_env(cwd: os.PathLike[str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PWD"] = os.fspath(cwd)
    return env


async def _spawn(
    command: str, cwd: os.PathLike[str]
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    """Start ``/bin/sh -c command``: a new session, so killpg reaches all it starts."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop),
        "/bin/sh",
        "-c",
        command,
        cwd=cwd,
        env=_shell_env(cwd),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
