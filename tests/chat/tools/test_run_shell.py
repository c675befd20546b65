"""run_shell: streaming, exit status, timeout, and the bubblewrap sandbox around it.

Processes inside the sandbox have PIDs of their own namespace, so the tests find them from
outside by a unique marker in their command line (``sleep <marker>``) in the host's /proc.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from pathlib import Path

import pytest

from chat.config import ToolsConfig
from chat.runtime.types import ToolContext
from chat.tools import ToolRegistry, builtin_tools
from chat.tools.base import OUTPUT_CAP
from chat.tools.bwrap import MISSING, SANDBOX_PATH, hidden_etc_entries
from tests.chat.tools.conftest import Runner


def _marker() -> str:
    """A sleep duration no other process on the machine uses: ``sleep <it>`` is findable."""
    return f"{4000 + secrets.randbelow(1000)}.{secrets.randbelow(10**12):012d}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead enough
    except (FileNotFoundError, ProcessLookupError):
        return False


def _host_pids(marker: str) -> list[int]:
    """Host PIDs of the live processes running ``sleep <marker>``, seen from outside."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                args = file.read().split(b"\0")
        except OSError:
            continue
        if args[:2] == [b"sleep", marker.encode()] and _alive(int(entry)):
            pids.append(int(entry))
    return pids


async def _wait_seen(marker: str) -> list[int]:
    """The host PIDs of ``sleep <marker>`` once there are any (the shell may print before its
    background child has become ``sleep``)."""
    for _ in range(500):  # bounded: about 5 seconds
        if pids := _host_pids(marker):
            return pids
        await asyncio.sleep(0.01)
    return []


async def _wait_gone(pids: list[int]) -> bool:
    for _ in range(500):  # bounded: about 5 seconds
        if not any(_alive(pid) for pid in pids):
            return True
        await asyncio.sleep(0.01)
    return False


def test_run_shell_is_off_unless_enabled() -> None:
    assert "run_shell" not in builtin_tools(ToolsConfig())


async def test_output_streams_while_the_command_runs(run, workspace: Path) -> None:
    # The command only finishes once the test has SEEN "first": proof that it streamed.
    command = "echo first; while [ ! -e go ]; do sleep 0.01; done; echo second >&2; echo third"

    async def emit(data: str, stream: str) -> None:
        await run.emit(data, stream)
        if "first" in data:
            (workspace / "go").touch()

    tool = run.tools["run_shell"]
    outcome = await tool.run({"command": command, "timeout": 10}, ToolContext(str(workspace), emit))
    assert not outcome.is_error
    assert run.output == [("first\n", "stdout"), ("second\n", "stderr"), ("third\n", "stdout")]
    assert outcome.content == "first\nsecond\nthird\n"


async def test_runs_in_the_working_directory(run, workspace: Path) -> None:
    outcome = await run("run_shell", command="pwd -P; echo $PWD")
    real = await asyncio.to_thread(workspace.resolve)
    assert outcome.content == f"{real}\n{real}\n"


async def test_non_zero_exit_is_an_error_with_the_code(run) -> None:
    outcome = await run("run_shell", command="echo oops >&2; exit 3")
    assert outcome.is_error
    assert outcome.content == "oops\n\n[exit code 3]"


async def _run_until_seen(run: Runner, workspace: Path, command: str, marker: str, **arguments):
    """Run ``command`` (which prints "started" once ``sleep <marker>`` runs and then waits for
    the file ``go``); return the outcome and the host PIDs of the sleep seen while it ran."""
    seen: list[int] = []

    async def emit(data: str, stream: str) -> None:
        if "started" in data:
            seen.extend(await _wait_seen(marker))
            (workspace / "go").touch()

    tool = run.tools["run_shell"]
    outcome = await tool.run({"command": command, **arguments}, ToolContext(str(workspace), emit))
    return outcome, seen


WAIT_FOR_GO = "until [ -e go ]; do sleep 0.01; done"


async def test_timeout_kills_the_command_and_its_children(run, workspace: Path) -> None:
    marker = _marker()
    command = f"sleep {marker} & echo started; wait"
    outcome, seen = await _run_until_seen(run, workspace, command, marker, timeout=1)
    assert outcome.is_error
    assert outcome.content.endswith("[timed out after 1s; the command was killed]")
    assert len(seen) == 1  # the sleep ran, visible from outside …
    assert await _wait_gone(seen)  # … and is gone


@pytest.mark.parametrize(
    "background",
    [
        "setsid sleep {marker} &",  # a new session: out of reach of a process-group kill
        "( (sleep {marker} &) & );",  # a double fork: reparented away from the shell
        "nohup setsid sh -c 'trap \"\" HUP TERM; sleep {marker}' &",
    ],
)
async def test_background_processes_neither_hang_the_call_nor_outlive_it(
    run, workspace: Path, background: str
) -> None:
    # They hold the output pipes open: had they survived the shell, the call would have
    # waited for them until its timeout (an error), and they would still be running.
    marker = _marker()
    command = f"{background.format(marker=marker)} echo started; {WAIT_FOR_GO}; echo done"
    outcome, seen = await _run_until_seen(run, workspace, command, marker, timeout=120)
    assert outcome.content == "started\ndone\n" and not outcome.is_error
    assert len(seen) == 1
    assert await _wait_gone(seen)


async def test_cancellation_kills_everything_in_the_sandbox(run, workspace: Path) -> None:
    started = asyncio.Event()

    async def emit(data: str, stream: str) -> None:
        started.set()

    marker = _marker()
    tool = run.tools["run_shell"]
    command = f"setsid sleep {marker} & echo started; wait"
    task = asyncio.create_task(tool.run({"command": command}, ToolContext(str(workspace), emit)))
    await asyncio.wait_for(started.wait(), 30)
    seen = await _wait_seen(marker)
    assert len(seen) == 1
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)  # bounded: a hang is a failure
    assert task in done and task.cancelled()
    assert await _wait_gone(seen)


async def test_collected_output_is_capped(run) -> None:
    outcome = await run("run_shell", command=f"head -c {OUTPUT_CAP + 1234} /dev/zero | tr '\\0' x")
    assert outcome.content == "x" * OUTPUT_CAP + "\n… [truncated: 1,234 more characters]"
    assert sum(len(data) for data, _ in run.output) == OUTPUT_CAP + 1234  # the stream is whole


# ---------------------------------------------------------------- what the sandbox can reach


async def test_the_shell_never_sees_the_server_s_environment(run, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("SECRET_KEY", "django-secret")
    command = (
        "env; tr '\\0' '\\n' </proc/$PPID/environ; tr '\\0' '\\n' </proc/1/environ; "
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' <$f; done; echo; "
        "echo pids: $(cd /proc && echo [0-9]*); echo ppid: $PPID"
    )
    outcome = await run("run_shell", command=command)
    assert f"PATH={SANDBOX_PATH}\n" in outcome.content  # the environment was read …
    assert "HOME=/tmp\n" in outcome.content
    assert "sk-very-secret" not in outcome.content  # … and holds no secret
    assert "django-secret" not in outcome.content
    # The shell is PID 1 of its own namespace; no process of the server is in there.
    pids = outcome.content.split("pids: ")[1].split("\n")[0].split()
    assert "1" in pids and str(os.getpid()) not in pids
    assert "ppid: 0\n" in outcome.content


async def test_only_the_working_directory_is_writable(run, workspace: Path, outside: Path) -> None:
    private = f"dispatch-private-{_marker()}"
    targets = [f"{outside}/owned", "/etc/owned", "/usr/owned", "/owned", "/root/owned"]
    command = "; ".join(
        f"if {{ echo x > {target}; }} 2>/dev/null; then echo WROTE {target}; else echo refused; fi"
        for target in targets
    )
    # The test's workspace lies below /tmp, so its parent is in the sandbox's private /tmp.
    command += (
        f"; echo x > ../owned; echo x > /tmp/{private} && echo tmp ok"
        f"; echo x > inside.txt && echo cwd ok; cat {outside}/secret.txt /etc/shadow"
    )
    outcome = await run("run_shell", command=command)
    lines = outcome.content.splitlines()
    assert lines[: len(targets)] == ["refused"] * len(targets)
    assert "tmp ok" in lines and "cwd ok" in lines
    assert os.listdir(workspace) == ["inside.txt"]  # the working directory persists …
    assert sorted(os.listdir(outside)) == ["secret.txt"]  # … nothing else does
    assert sorted(os.listdir(workspace.parent)) == ["outside", "workspace"]
    host_paths = [f"/tmp/{private}", "/etc/owned", "/usr/owned", "/owned", "/root/owned"]
    assert not any(await asyncio.to_thread(lambda: [os.path.exists(p) for p in host_paths]))
    assert "TOP SECRET" not in outcome.content  # outside the working directory: not there
    assert "root:" not in outcome.content  # /etc/shadow is covered up
    assert outcome.is_error  # the cat failed


async def _listener() -> tuple[asyncio.Server, list[bytes]]:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(100))
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), received


CONNECT = (
    "bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}' 2>/dev/null "
    "&& echo connected || echo unreachable"
)


async def test_no_network_by_default(run) -> None:
    server, received = await _listener()
    port = server.sockets[0].getsockname()[1]
    async with server:
        outcome = await run("run_shell", command=CONNECT.format(port=port))
    assert outcome.content == "unreachable\n"
    assert received == []


async def test_network_when_the_deployment_allows_it(workspace: Path) -> None:
    config = ToolsConfig(workspace_root=workspace, run_shell=True, run_shell_network=True)
    run = Runner(workspace, config)
    server, received = await _listener()
    port = server.sockets[0].getsockname()[1]
    async with server:
        outcome = await run("run_shell", command=CONNECT.format(port=port))
    assert outcome.content == "connected\n"
    assert received == [b"hello\n"]


# ---------------------------------------------------------------- without a working sandbox


async def test_without_bubblewrap_run_shell_refuses(run, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    outcome = await run("run_shell", command="echo should not run > ran.txt")
    assert outcome.is_error
    assert outcome.content == MISSING
    assert "bubblewrap" in outcome.content and "not installed" in outcome.content
    assert not (run.cwd / "ran.txt").exists()
    registry = ToolRegistry(ToolsConfig(workspace_root=run.cwd, run_shell=True))
    (entry,) = [e for e in registry.state() if e["name"] == "run_shell"]
    assert entry["state"] == f"error: {MISSING}"


async def test_a_sandbox_that_cannot_start_is_a_clear_error(run, monkeypatch, tmp_path) -> None:
    # A bwrap that fails the way it does where the kernel forbids user namespaces.
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    outcome = await run("run_shell", command="echo should not run")
    assert outcome.is_error
    assert outcome.content == (
        "run_shell: the sandbox (bubblewrap) could not start the command:\n"
        "bwrap: No permissions to create a new namespace\n"
    )


def test_etc_entries_not_everyone_may_read_are_hidden(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "open").mkdir(parents=True)
    (etc / "closed").mkdir(mode=0o700)
    (etc / "listless").mkdir(mode=0o711)
    (etc / "closed" / "inner").write_text("x")
    for name, mode in [("passwd", 0o644), ("shadow", 0o640), ("open/key", 0o600)]:
        (etc / name).write_text("x")
        (etc / name).chmod(mode)
    (etc / "open" / "link").symlink_to("../shadow")
    (etc / "closed").chmod(0o700)
    assert hidden_etc_entries(str(etc)) == [
        (f"{etc}/closed", True),
        (f"{etc}/listless", True),
        (f"{etc}/shadow", False),
        (f"{etc}/open/key", False),
    ]
