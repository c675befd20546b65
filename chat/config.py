"""The Dispatch config file (TOML, named by settings.DISPATCH_CONFIG; optional).

Example::

    default_model = "openai/gpt-4o-mini"        # optional; else the first model

    [runtime]
    max_steps = 25
    retry_delays = [0.5, 1, 2, 4]               # seconds; its length is the retry budget
    max_tokens = 4096                           # optional

    [tools]
    workspace_root = "/srv/dispatch/workspace"  # default: var/workspace; relative to this file
    run_shell = false                           # the run_shell tool is off unless true
    run_shell_timeout = 60
    run_shell_network = false                   # the run_shell sandbox has no network unless true

    [[credentials]]
    name = "openai"
    kind = "openai"                             # openai | anthropic | local
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    models = ["gpt-4o-mini"]                    # omitted: listed from the server
    context_window = 128000                     # optional, for every model of the credential
    reasoning_effort = true                     # pass reasoning_effort to the server
    read_timeout = 600                          # seconds a stream may stay silent (stall)

    [[credentials]]
    name = "local"
    kind = "local"
    path = "/models/qwen.gguf"                  # optional; default: the bundled SmolLM2
    models = ["qwen"]                           # optional; default: the file's stem

    [[mcp_servers]]
    name = "files"
    command = ["python", "server.py"]           # stdio, or:
    # url = "http://127.0.0.1:9000/mcp"         # streamable HTTP
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A bad config file; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class CredentialConfig:
    name: str
    kind: str  # "openai" | "anthropic" | "local"
    base_url: str | None = None
    api_key_env: str | None = None
    models: tuple[str, ...] | None = None  # None: list them from the server
    context_window: int | None = None
    reasoning_effort: bool = False
    path: str | None = None  # kind = "local": the GGUF file
    read_timeout: float | None = None  # seconds of provider silence that fail a step; None: 600


@dataclass(frozen=True)
class RuntimeConfig:
    max_steps: int = 25
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    max_tokens: int | None = None


@dataclass(frozen=True)
class ToolsConfig:
    workspace_root: Path | None = None  # None: settings.DISPATCH_WORKSPACE_ROOT (var/workspace)
    run_shell: bool = False
    run_shell_timeout: float = 60.0
    run_shell_network: bool = False


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: tuple[str, ...] | None = None
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchConfig:
    credentials: tuple[CredentialConfig, ...] = ()
    default_model: str | None = None
    runtime: RuntimeConfig = RuntimeConfig()
    tools: ToolsConfig = ToolsConfig()
    mcp_servers: tuple[McpServerConfig, ...] = ()
    source: str | None = None  # the file it was read from, None when there is none


# The embedded model: served when the config declares no credentials at all.
EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_CREDENTIAL = CredentialConfig(name="local", kind="local", models=(EMBEDDED_MODEL,))
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
KINDS = ("openai", "anthropic", "local")

_TOP_KEYS = {"default_model", "runtime", "tools", "credentials", "mcp_servers"}
_RUNTIME_KEYS = {"max_steps", "retry_delays", "max_tokens"}
_TOOLS_KEYS = {"workspace_root", "run_shell", "run_shell_timeout", "run_shell_network"}
_CREDENTIAL_KEYS = {
    "name",
    "kind",
    "base_url",
    "api_key_env",
    "models",
    "context_window",
    "reasoning_effort",
    "path",
    "read_timeout",
}
# Keys that only make sense for some kinds of credential.
_KIND_ONLY_KEYS = {
    "path": {"local"},
    "base_url": {"openai", "anthropic"},
    "api_key_env": {"openai", "anthropic"},
    "reasoning_effort": {"openai", "anthropic"},
    "read_timeout": {"openai", "anthropic"},
}
_MCP_KEYS = {"name", "command", "url", "env"}

_config: DispatchConfig | None = None


def get_config() -> DispatchConfig:
    """The process-wide config, read from settings.DISPATCH_CONFIG on first use."""
    global _config
    if _config is None:
        _config = load_config()
    return _config


def reset_config() -> None:
    """Forget the cached config (tests change settings.DISPATCH_CONFIG)."""
    global _config
    _config = None


def load_config(path: str | Path | None = None) -> DispatchConfig:
    """Read and validate a config file; a missing file means the defaults (``source`` None).

    Raises ConfigError naming the file, the line and the problem.
    """
    if path is None:
        from django.conf import settings

        path = settings.DISPATCH_CONFIG
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DispatchConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc}") from exc
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", str(exc))
        if match is None:
            raise ConfigError(f"{path}: {exc}") from exc
        problem = str(exc)[: match.start()]
        raise ConfigError(f"{path}, line {match[1]}, column {match[2]}: {problem}") from exc
    return _Parser(path, raw).parse(data)


# ---------------------------------------------------------------- validation

Key = tuple[str | int, ...]  # a path into the document: ("credentials", 0, "kind")


def _key_lines(raw: str) -> dict[Key, int]:
    """Map table headers and keys to their 1-based line, so errors can point at them.

    A light scan (not a TOML parser): enough for tables, arrays of tables and (dotted) keys.
    """
    lines: dict[Key, int] = {}
    counts: dict[str, int] = {}
    table: Key = ()
    for number, line in enumerate(raw.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?", stripped)
        if header:
            parts = tuple(header[2].split("."))
            if header[1] == "[[":
                name = header[2]
                counts[name] = counts.get(name, -1) + 1
                table = (*parts, counts[name])
            else:
                table = parts
            lines.setdefault(table, number)
            continue
        assignment = re.match(r"^([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=", stripped)
        if assignment:
            key = tuple(part.strip() for part in assignment[1].split("."))
            lines.setdefault((*table, *key), number)
    return lines


class _Parser:
    """Turns the parsed TOML into DispatchConfig, failing on the first problem found."""

    def __init__(self, path: Path, raw: str):
        self.path = path
        self.lines = _key_lines(raw)

    def fail(self, key: Key, problem: str) -> ConfigError:
        for end in range(len(key), 0, -1):
            if key[:end] in self.lines:
                return ConfigError(f"{self.path}, line {self.lines[key[:end]]}: {problem}")
        return ConfigError(f"{self.path}: {problem}")

    @staticmethod
    def _name(key: Key) -> str:
        out = ""
        for part in key:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    # ---- typed getters: each returns None when the key is absent

    def table(self, value: Any, key: Key, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"{self._name(key)} must be a table")
        for name in value:
            if name not in allowed:
                raise self.fail(
                    (*key, name),
                    f"unknown key {self._name((*key, name))!r} "
                    f"(expected one of: {', '.join(sorted(allowed))})",
                )
        return value

    def string(self, table: dict[str, Any], key: Key, *, required: bool = False) -> str | None:
        value = table.get(str(key[-1]))
        if value is None:
            if required:
                raise self.fail(key[:-1], f"{self._name(key)} is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"{self._name(key)} must be a non-empty string")
        return value

    def boolean(self, table: dict[str, Any], key: Key) -> bool | None:
        value = table.get(str(key[-1]))
        if value is not None and not isinstance(value, bool):
            raise self.fail(key, f"{self._name(key)} must be true or false")
        return value

    def positive_int(self, table: dict[str, Any], key: Key) -> int | None:
        value = table.get(str(key[-1]))
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise self.fail(key, f"{self._name(key)} must be a positive integer")
        return value

    def number(self, table: dict[str, Any], key: Key, *, positive: bool) -> float | None:
        value = table.get(str(key[-1]))
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(key, f"{self._name(key)} must be a number ≥ 0")
        if positive and value == 0:
            raise self.fail(key, f"{self._name(key)} must be greater than 0")
        return float(value)

    def strings(self, table: dict[str, Any], key: Key) -> tuple[str, ...] | None:
        value = table.get(str(key[-1]))
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise self.fail(key, f"{self._name(key)} must be a non-empty array of strings")
        return tuple(value)

    def tables(self, data: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail((name,), f"{name} must be an array of tables ([[{name}]])")
        return value

    # ---- sections

    def parse(self, data: dict[str, Any]) -> DispatchConfig:
        self.table(data, (), _TOP_KEYS)
        credentials = tuple(
            self.credential(table, ("credentials", index))
            for index, table in enumerate(self.tables(data, "credentials"))
        )
        self.unique([c.name for c in credentials], "credentials")
        mcp_servers = tuple(
            self.mcp_server(table, ("mcp_servers", index))
            for index, table in enumerate(self.tables(data, "mcp_servers"))
        )
        self.unique([s.name for s in mcp_servers], "mcp_servers")
        default_model = self.string(data, ("default_model",))
        if default_model is not None:
            self.check_default_model(default_model, credentials)
        return DispatchConfig(
            credentials=credentials,
            default_model=default_model,
            runtime=self.runtime(data.get("runtime", {})),
            tools=self.tools(data.get("tools", {})),
            mcp_servers=mcp_servers,
            source=str(self.path),
        )

    def unique(self, names: list[str], section: str) -> None:
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                raise self.fail((section, index, "name"), f"duplicate {section} name {name!r}")
            seen.add(name)

    def check_default_model(
        self, default_model: str, credentials: tuple[CredentialConfig, ...]
    ) -> None:
        key: Key = ("default_model",)
        credential_name, _, model = default_model.partition("/")
        if not model:
            raise self.fail(key, "default_model must be '<credential>/<model>'")
        by_name = {c.name: c for c in credentials or (EMBEDDED_CREDENTIAL,)}
        credential = by_name.get(credential_name)
        if credential is None:
            raise self.fail(
                key,
                f"default_model {default_model!r} names no credential "
                f"(credentials: {', '.join(by_name)})",
            )
        if credential.models is not None and model not in credential.models:
            raise self.fail(
                key,
                f"default_model {default_model!r}: credential {credential_name!r} has no "
                f"model {model!r} (models: {', '.join(credential.models)})",
            )

    def runtime(self, value: Any) -> RuntimeConfig:
        key: Key = ("runtime",)
        table = self.table(value, key, _RUNTIME_KEYS)
        defaults = RuntimeConfig()
        delays = table.get("retry_delays")
        if delays is not None and (
            not isinstance(delays, list)
            or not all(
                isinstance(d, int | float) and not isinstance(d, bool) and d >= 0 for d in delays
            )
        ):
            raise self.fail(
                (*key, "retry_delays"), "runtime.retry_delays must be an array of numbers ≥ 0"
            )
        max_steps = self.positive_int(table, (*key, "max_steps"))
        return RuntimeConfig(
            max_steps=defaults.max_steps if max_steps is None else max_steps,
            retry_delays=defaults.retry_delays
            if delays is None
            else tuple(float(d) for d in delays),
            max_tokens=self.positive_int(table, (*key, "max_tokens")),
        )

    def tools(self, value: Any) -> ToolsConfig:
        key: Key = ("tools",)
        table = self.table(value, key, _TOOLS_KEYS)
        defaults = ToolsConfig()
        root = self.string(table, (*key, "workspace_root"))
        run_shell = self.boolean(table, (*key, "run_shell"))
        timeout = self.number(table, (*key, "run_shell_timeout"), positive=True)
        network = self.boolean(table, (*key, "run_shell_network"))
        return ToolsConfig(
            workspace_root=defaults.workspace_root if root is None else Path(root),
            run_shell=defaults.run_shell if run_shell is None else run_shell,
            run_shell_timeout=defaults.run_shell_timeout if timeout is None else timeout,
            run_shell_network=defaults.run_shell_network if network is None else network,
        )

    def credential(self, value: Any, key: Key) -> CredentialConfig:
        table = self.table(value, key, _CREDENTIAL_KEYS)
        name = self.string(table, (*key, "name"), required=True)
        assert name is not None
        if "/" in name:
            raise self.fail((*key, "name"), f"credential name {name!r} must not contain '/'")
        kind = self.string(table, (*key, "kind"), required=True)
        if kind not in KINDS:
            raise self.fail(
                (*key, "kind"), f"unknown kind {kind!r} (expected one of: {', '.join(KINDS)})"
            )
        for option, kinds in _KIND_ONLY_KEYS.items():
            if option in table and kind not in kinds:
                raise self.fail(
                    (*key, option), f"{option} is not allowed for a credential of kind {kind!r}"
                )
        base_url = self.string(table, (*key, "base_url"))
        path = self.string(table, (*key, "path"))
        models = self.strings(table, (*key, "models"))
        if models is not None and len(set(models)) != len(models):
            raise self.fail((*key, "models"), f"credential {name!r} lists a model twice")
        if kind == "openai" and base_url is None:
            base_url = OPENAI_DEFAULT_BASE_URL
        if kind == "local" and models is None:
            # A local file serves one model; it is named after the file.
            models = (Path(path).stem,) if path else (EMBEDDED_MODEL,)
        return CredentialConfig(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key_env=self.string(table, (*key, "api_key_env")),
            models=models,
            context_window=self.positive_int(table, (*key, "context_window")),
            reasoning_effort=bool(self.boolean(table, (*key, "reasoning_effort"))),
            path=path,
            read_timeout=self.number(table, (*key, "read_timeout"), positive=True),
        )

    def mcp_server(self, value: Any, key: Key) -> McpServerConfig:
        table = self.table(value, key, _MCP_KEYS)
        name = self.string(table, (*key, "name"), required=True)
        assert name is not None
        command = self.strings(table, (*key, "command"))
        url = self.string(table, (*key, "url"))
        if (command is None) == (url is None):
            raise self.fail(key, f"mcp server {name!r} needs exactly one of command or url")
        env = table.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise self.fail((*key, "env"), f"mcp server {name!r}: env must be a table of strings")
        return McpServerConfig(name=name, command=command, url=url, env=dict(env))
