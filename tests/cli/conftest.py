"""The ``dispatch`` CLI run as a subprocess (the console script ``make install`` puts in
.venv/bin) against a live Daphne with a scripted OpenAI-format model."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chat.live import start_stack
from tests.servers import VENV_BIN

DISPATCH = VENV_BIN / "dispatch"


@pytest.fixture(scope="module")
def stack():
    yield from start_stack()


@pytest.fixture
def config_home(tmp_path) -> Path:
    """An empty XDG_CONFIG_HOME: the user's own ~/.config/dispatch/cli.toml never leaks in."""
    home = tmp_path / "config"
    home.mkdir()
    return home


@pytest.fixture
def cli_env(stack, config_home) -> dict[str, str]:
    """Alice against the stack; tests change entries to test the configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    return env | {
        "XDG_CONFIG_HOME": str(config_home),
        "NO_COLOR": "1",
        "DISPATCH_URL": stack.url,
        "DISPATCH_TOKEN": stack.token,
    }


@pytest.fixture
def dispatch(cli_env):
    """``dispatch(*args, input=None, env=None)`` runs the CLI to its end."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        return subprocess.run(
            [str(DISPATCH), *args],
            env=cli_env if env is None else env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


@dataclass
class Running:
    """A CLI process whose stdout and stderr are read as they come (to poll on)."""

    process: subprocess.Popen
    out: list[bytes] = field(default_factory=list)
    err: list[bytes] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return b"".join(self.out).decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return b"".join(self.err).decode("utf-8", "replace")

    def wait(self) -> int:
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Say where the CLI is stuck (its Python stack), not only that it is.
            dump = subprocess.run(
                [str(VENV_BIN / "py-spy"), "dump", "--pid", str(self.process.pid)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            raise AssertionError(
                f"the CLI did not exit in 60 s; its stack:\n{dump.stdout}{dump.stderr}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}"
            ) from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def start(self) -> Running:
        self._readers = [
            threading.Thread(target=_pump, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self


def _pump(stream, sink: list[bytes]) -> None:
    # read1 returns what is there, so a line the CLI flushed without its newline shows up.
    while chunk := stream.read1(4096):
        sink.append(chunk)


@pytest.fixture
def dispatch_background(cli_env):
    """``dispatch_background(*args)`` starts the CLI and returns a ``Running``."""
    started: list[Running] = []

    def start(*args: str) -> Running:
        # The CLI must start with Ctrl-C as a shell gives it, whatever an earlier test left in
        # this process: an ignored or blocked SIGINT would be inherited across exec.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(
                [str(DISPATCH), *args],
                env=cli_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        started.append(Running(process).start())
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
