"""A live stack for transport tests: a real Daphne worker whose model is a scripted
OpenAI-format SSE server running in the test process.

The worker's config names one credential, ``scripted``, pointing at the scripted server, so
``scripted/test-model`` is its default model. Tests script replies on ``stack.scripted`` and talk
to ``stack.url`` over real HTTP and WebSockets.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.chat.providers.sse_server import ScriptedServer
from tests.servers import DaphneWorker, manage

COMPLETIONS = "/v1/chat/completions"
MODEL = "scripted/test-model"
DEADLINE = 30.0


def write_config(
    directory: Path,
    scripted_url: str,
    extra: str = "",
    top: str = "",
    name: str = "dispatch.toml",
    runtime: str = "",
) -> Path:
    config = directory / name
    config.write_text(
        f"""{top}
[runtime]
retry_delays = [0.05, 0.05]
{runtime}

[[credentials]]
name = "scripted"
kind = "openai"
base_url = "{scripted_url}/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["test-model", "other-model"]
context_window = 8192
{extra}
"""
    )
    return config


def create_user(env: dict[str, str], username: str) -> tuple[int, str]:
    """Create a user in the stack's database; its id and API token."""
    out = manage(
        [
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from chat.auth import api_token_create; "
            f"user = User.objects.create_user({username!r}); "
            "print(user.pk, api_token_create(user=user))",
        ],
        **env,
    )
    pk, token = out.strip().splitlines()[-1].split()
    return int(pk), token


@dataclass
class Stack:
    scripted: ScriptedServer
    env: dict[str, str]
    workers: list[DaphneWorker]
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.workers[0].url

    @property
    def token(self) -> str:
        return self.tokens["alice"]

    def workspace(self, user: str = "alice") -> Path:
        """The user's workspace root in the stack (conversations' cwds are relative to it)."""
        return Path(self.env["DISPATCH_VAR_DIR"]) / "workspace" / str(self.user_ids[user])

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def client(self, user: str = "alice", worker: int = 0) -> httpx.Client:
        return httpx.Client(
            base_url=self.workers[worker].url, headers=self.headers(user), timeout=30
        )

    def ws_url(self, user: str = "alice", worker: int = 0, path: str = "/ws") -> str:
        base = self.workers[worker].url.replace("http://", "ws://")
        return f"{base}{path}?token={self.tokens[user]}"


def start_stack(
    env_extra: dict[str, str] | None = None,
    workers: int = 1,
    *,
    config_extra: str = "",
    config_top: str = "",
    runtime_extra: str = "",
    model_url: str | None = None,
    model_paths: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """Live workers with users alice and bob and a scripted OpenAI-format model.

    ``config_extra`` is TOML after the ``scripted`` credential (``MODEL_URL`` in it becomes
    the model server's URL), ``config_top`` top-level keys before every table,
    ``runtime_extra`` keys of its ``[runtime]`` table; ``model_url`` puts another model server
    in the scripted one's place. With ``model_paths``, worker ``i``
    has a config of its own whose model is served under ``model_paths[i]`` (e.g. ``/a``: its
    turns ask ``/a/v1/chat/completions``), so a test can script each worker's turns apart.
    """
    scripted = ScriptedServer().start()
    var_dir = Path(tempfile.mkdtemp(prefix="dispatch-stack-"))
    model_url = model_url or scripted.url
    config = write_config(
        var_dir,
        model_url,
        config_extra.replace("MODEL_URL", model_url),
        config_top,
        runtime=runtime_extra,
    )
    env = {
        "DISPATCH_VAR_DIR": str(var_dir),
        "DISPATCH_CONFIG": str(config),
        "SCRIPTED_API_KEY": "test-key",
        "DISPATCH_TURN_RATE_LIMIT": "0",  # tests start many turns; the limit has its own tests
        "DISPATCH_DRAIN_SECONDS": "10",  # a worker stopped with turns running exits soon
        **(env_extra or {}),
    }
    manage(["migrate", "--noinput"], **env)
    stack = Stack(scripted, env, [])
    for name in ("alice", "bob"):
        stack.user_ids[name], stack.tokens[name] = create_user(env, name)
    try:
        for index in range(workers):
            worker_env = env
            if model_paths:
                own = write_config(
                    var_dir, model_url + model_paths[index], name=f"worker-{index}.toml"
                )
                worker_env = env | {"DISPATCH_CONFIG": str(own)}
            stack.workers.append(DaphneWorker(worker_env).start())
        yield stack
    finally:
        scripted.close()
        for worker in stack.workers:
            worker.stop()


def cluster_env(postgres_server, redis_url: str, name: str) -> dict[str, str]:
    """Workers sharing a fresh PostgreSQL database ``name_*`` and Redis; a quick sweep."""
    return {
        "DATABASE_URL": postgres_server.database_create(f"{name}_{uuid.uuid4().hex[:8]}"),
        "REDIS_URL": redis_url,
        "DISPATCH_HEARTBEAT_SECONDS": "0.5",
        "DISPATCH_STALE_SECONDS": "3",
    }


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def wait_for(predicate, what: str, deadline: float = DEADLINE):
    """Poll ``predicate`` until it returns a truthy value (a bounded wait on a condition)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
