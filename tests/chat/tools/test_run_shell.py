"""run_shell: streaming, exit status, timeout, and killing the whole process group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from chat.config import ToolsConfig
from chat.runtime.types import ToolContext
from chat.tools import builtin_tools
from chat.tools.base import OUTPUT_CAP


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


async def _wait_gone(pid: int) -> bool:
    for _ in range(500):  # bounded: about 5 seconds
        if _gone(pid):
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
    outcome = await run("run_shell", command="pwd -P")
    assert outcome.content == f"{await asyncio.to_thread(workspace.resolve)}\n"


async def test_non_zero_exit_is_an_error_with_the_code(run) -> None:
    outcome = await run("run_shell", command="echo oops >&2; exit 3")
    assert outcome.is_error
    assert outcome.content == "oops\n\n[exit code 3]"


async def test_timeout_kills_the_command_and_its_children(run, workspace: Path) -> None:
    outcome = await run("run_shell", command="sleep 1000 & echo $! > child.pid; wait", timeout=0.5)
    assert outcome.is_error
    assert outcome.content.endswith("[timed out after 0.5s; the command was killed]")
    assert await _wait_gone(int((workspace / "child.pid").read_text()))


async def test_background_children_do_not_outlive_the_shell(run, workspace: Path) -> None:
    outcome = await run("run_shell", command="sleep 1000 & echo $! > child.pid; echo done")
    assert outcome.content == "done\n" and not outcome.is_error
    assert await _wait_gone(int((workspace / "child.pid").read_text()))


async def test_cancellation_kills_the_process_group(run, workspace: Path) -> None:
    started = asyncio.Event()

    async def emit(data: str, stream: str) -> None:
        started.set()

    tool = run.tools["run_shell"]
    command = "sleep 1000 & echo $! > child.pid; echo started; wait"
    task = asyncio.create_task(tool.run({"command": command}, ToolContext(str(workspace), emit)))
    await asyncio.wait_for(started.wait(), 10)
    child = int((workspace / "child.pid").read_text())
    assert not _gone(child)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)  # bounded: a hang is a failure
    assert task in done and task.cancelled()
    assert await _wait_gone(child)


async def test_collected_output_is_capped(run) -> None:
    outcome = await run("run_shell", command=f"head -c {OUTPUT_CAP + 1234} /dev/zero | tr '\\0' x")
    assert outcome.content == "x" * OUTPUT_CAP + "\n… [truncated: 1,234 more characters]"
    assert sum(len(data) for data, _ in run.output) == OUTPUT_CAP + 1234  # the stream is whole


async def test_the_shell_never_sees_the_server_s_secrets(tmp_path, monkeypatch):
    from chat.config import ToolsConfig
    from chat.runtime import ToolContext
    from chat.tools import builtin_tools

    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("SECRET_KEY", "django-secret")
    tool = builtin_tools(ToolsConfig(workspace_root=tmp_path, run_shell=True))["run_shell"]

    async def ignore(data, stream):
        return None

    outcome = await tool.run({"command": "env"}, ToolContext(str(tmp_path), ignore))
    assert not outcome.is_error
    assert "PATH=" in outcome.content
    assert "sk-very-secret" not in outcome.content and "django-secret" not in outcome.content
