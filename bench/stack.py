"""A Dispatch stack for a benchmark: a config naming the stand-in, a migrated database, a user
with an API token, and one or more real Daphne workers (tests/servers.py launchers).

Workers get ``DISPATCH_TURN_RATE_LIMIT=0`` (a benchmark starts hundreds of turns at once) and
log warnings only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.servers import DaphneWorker, manage

CREDENTIAL = "standin"
MODEL = f"{CREDENTIAL}/standin"
USER = "bench"


def write_config(directory: Path, standin_url: str, extra: str = "") -> Path:
    """The Dispatch config: the stand-in is the only credential (so the default model)."""
    config = directory / "dispatch.toml"
    config.write_text(
        f"""
default_model = "{MODEL}"

[[credentials]]
name = "{CREDENTIAL}"
kind = "openai"
base_url = "{standin_url}"
api_key_env = "STANDIN_API_KEY"
models = ["standin"]
context_window = 8192
{extra}
"""
    )
    return config


class Stack:
    """Context manager: ``url(i)`` / ``ws_url(i)`` of worker i, ``token`` of the bench user."""

    def __init__(
        self,
        standin_url: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        config_extra: str = "",
    ):
        self.dir = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
        self.env = {
            "DISPATCH_VAR_DIR": str(self.dir),
            "DISPATCH_CONFIG": str(write_config(self.dir, standin_url, config_extra)),
            "STANDIN_API_KEY": "bench",
            "DISPATCH_TURN_RATE_LIMIT": "0",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.count = workers
        self.workers: list[DaphneWorker] = []
        self.token = ""

    def start(self) -> Stack:
        manage(["migrate", "--noinput"], **self.env)
        self.token = self.user_create(USER)
        try:
            for _ in range(self.count):
                self.workers.append(DaphneWorker(self.env).start())
        except BaseException:
            self.stop()
            raise
        return self

    def user_create(self, username: str) -> str:
        """Create a user; its API token."""
        out = manage(
            [
                "shell",
                "-c",
                "from django.contrib.auth.models import User; "
                "from chat.auth import api_token_create; "
                f"print(api_token_create(user=User.objects.create_user({username!r})))",
            ],
            **self.env,
        )
        return out.strip().splitlines()[-1]

    def url(self, worker: int = 0) -> str:
        return self.workers[worker].url

    def ws_url(self, worker: int = 0) -> str:
        return self.workers[worker].url.replace("http://", "ws://") + f"/ws?token={self.token}"

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the workers have used so far."""
        return sum(process_cpu_seconds(w.pid) for w in self.workers if w.pid)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from ``/proc/<pid>/stat``, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
