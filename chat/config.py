"""The Dispatch config file (TOML, named by settings.DISPATCH_CONFIG; optional).

Example::

    default_model = "openai/gpt-4o-mini"        # optional; else the first model
    plugins = ["dispatch-weather"]              # installed plugin packages to load (docs/plugins.md)

    [runtime]
    max_steps = 25
    retry_delays = [0.5, 1, 2, 4]               # seconds; its length is the retry budget
    max_tokens = 4096                           # optional; a credential's own wins
    vision_model = "openai/gpt-4o-mini"         # optional: describes images for models without vision

    [compaction]
    threshold = 85                              # % of the window; 0: never automatically
    keep_messages = 10                          # messages a compaction keeps verbatim
    summary_max_tokens = 1024

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
    max_tokens = 4096                           # sampling, all optional: the answer's limit,
    temperature = 0.7                           # temperature, top_p, top_k, min_p,
    top_p = 0.9                                 # presence_penalty, frequency_penalty, seed,
                                                # repeat_penalty (what each kind takes: below)
    vision = true                               # its models see images; or ["gpt-4o", …]

    [[credentials]]
    name = "local"
    kind = "local"
    path = "/models/qwen.gguf"                  # optional; default: the bundled SmolLM2
    models = ["qwen"]                           # optional; default: the file's stem

    [[credentials]]
    name = "acme"
    kind = "acme"                               # a kind a plugin provides
    options = { region = "eu" }                 # for the plugin; only for plugin kinds

    [system_prompt]                             # optional; chat.prompts has the syntax
    template = "You are a helpful agent. Today is {{date}}; you work in {{cwd}}."
    # file = "system_prompt.md"                 # or the template in a file

    [[mcp_servers]]
    name = "files"
    command = ["python", "server.py"]           # stdio, or:
    # url = "http://127.0.0.1:9000/mcp"         # streamable HTTP

Every table of the file is a pydantic model below, strict about types (``max_steps = "10"``
and ``run_shell = 1`` are errors, not conversions) and refusing unknown keys; the models are
the reference for what each key takes. Beyond each key's own type:

- credential names and MCP server names are unique, and a credential name has no ``/``;
- ``default_model`` names a configured ``<credential>/<model>`` (with no credentials at all:
  ``local/smollm2-135m-instruct``, the embedded model);
- ``default_model`` and ``runtime.vision_model`` name a configured ``<credential>/<model>``;
- a credential's ``kind`` is ``openai``, ``anthropic``, ``local`` or a kind an installed plugin
  provides; that plugin's distribution must be listed in ``plugins``;
- ``base_url`` and ``api_key_env`` are only for kinds ``openai``, ``anthropic`` and plugin kinds,
  ``reasoning_effort``, ``read_timeout`` and ``vision`` only for ``openai`` and ``anthropic``,
  ``path`` only for kind ``local``, ``options`` only for plugin kinds;
- sampling: ``max_tokens``, ``temperature``, ``top_p`` and ``top_k`` for every kind (``top_k``
  goes to an OpenAI-compatible server as an extra field, as vLLM and llama.cpp take it);
  ``min_p``, ``presence_penalty``, ``frequency_penalty`` and ``seed`` for ``openai`` and
  ``local``; ``repeat_penalty`` for ``local`` only. The bundled SmolLM2 (a ``local`` credential
  without ``path``) defaults to its model card's sampling (chat.providers.sampling);
- an MCP server has exactly one of ``command`` and ``url``.

Filled in when absent: an ``openai`` credential's ``base_url`` (OpenAI's API); a ``local``
credential's ``models`` (the file's stem, or the bundled SmolLM2 when there is no ``path``).

A bad file stops start-up with one line naming the file, the line, the key and the problem::

    dispatch.toml, line 7: unknown key 'credentials[0].kindd' (expected one of: api_key_env, …)
    dispatch.toml, line 3: runtime.max_steps must be a positive integer
    dispatch.toml, line 9: duplicate credentials name 'openai'
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from chat import prompts
from chat.plugins import BUILTIN_KINDS, installed_provider_kinds, normalize


class ConfigError(Exception):
    """A bad config file; the message names the file, the line and the problem."""


# ---------------------------------------------------------------- value types
#
# A key is one line in its table's class: its name, a value type from here, its default.
# Each value type carries the Problem its error states when a value does not fit.


@dataclass(frozen=True)
class Problem:
    """What a key's value must be, as its error says it: ``{key}`` is the key's dotted name
    (``credentials[0].models``), ``{input}`` the value that did not fit."""

    template: str


class OnlyFor:
    """The credential kinds a key is allowed for (any kind when a key has no OnlyFor)."""

    def __init__(self, *kinds: str) -> None:
        self.kinds = kinds


def _tuple(value: Any) -> Any:
    # TOML arrays arrive as lists; the config keeps tuples, and strict mode converts nothing.
    return tuple(value) if isinstance(value, list) else value


def _path(value: Any) -> Any:
    return Path(value) if isinstance(value, str) and value.strip() else value


_T = TypeVar("_T")
_NonBlank = Field(pattern=r"\S")

Text = Annotated[str, _NonBlank, Problem("{key} must be a non-empty string")]
Flag = Annotated[bool, Problem("{key} must be true or false")]
Count = Annotated[int, Field(gt=0), Problem("{key} must be a positive integer")]
Percent = Annotated[int, Field(ge=0, le=100), Problem("{key} must be an integer from 0 to 100")]
Temperature = Annotated[float, Field(ge=0, le=2), Problem("{key} must be a number from 0 to 2")]
Share = Annotated[float, Field(ge=0, le=1), Problem("{key} must be a number from 0 to 1")]
Penalty = Annotated[float, Field(ge=-2, le=2), Problem("{key} must be a number from -2 to 2")]
Positive = Annotated[float, Field(gt=0), Problem("{key} must be a number greater than 0")]
Seed = Annotated[int, Problem("{key} must be an integer")]
Seconds = Annotated[float, Field(gt=0), Problem("{key} must be a number greater than 0")]
Strings = Annotated[
    tuple[Annotated[str, _NonBlank], ...],
    BeforeValidator(_tuple),
    Field(min_length=1),
    Problem("{key} must be a non-empty array of strings"),
]
# true / false for every model of the credential, or the names of its models that see images.
Vision = Annotated[
    bool | tuple[Annotated[str, _NonBlank], ...],
    BeforeValidator(_tuple),
    Problem("{key} must be true, false or an array of model names"),
]
Delays = Annotated[
    tuple[Annotated[float, Field(ge=0)], ...],
    BeforeValidator(_tuple),
    Problem("{key} must be an array of numbers ≥ 0"),
]
Directory = Annotated[Path, BeforeValidator(_path), Problem("{key} must be a non-empty string")]
StringTable = Annotated[dict[str, str], Problem("{key} must be a table of strings")]
Tables = Annotated[
    tuple[_T, ...],
    BeforeValidator(_tuple),
    Problem("{key} must be an array of tables ([[{key}]])"),
]
Names = Annotated[
    tuple[Annotated[str, _NonBlank], ...],
    BeforeValidator(_tuple),
    Problem("{key} must be an array of strings"),
]
Table = Annotated[dict[str, Any], Problem("{key} must be a table")]
KINDS: tuple[str, ...] = BUILTIN_KINDS
PLUGIN = "plugin"  # in OnlyFor: every kind a plugin provides
_REMOTE = OnlyFor("openai", "anthropic")
_NOT_ANTHROPIC = OnlyFor("openai", "local")
_SERVED = OnlyFor("openai", "anthropic", PLUGIN)


def _known_kind(kind: str) -> str:
    """A built-in kind, or one an installed plugin provides (checked against ``plugins``
    by the top level)."""
    if kind in KINDS:
        return kind
    plugin_kinds = installed_provider_kinds()
    if kind not in plugin_kinds:
        expected = ", ".join((*KINDS, *sorted(plugin_kinds)))
        raise _invalid(f"unknown kind {kind!r} (expected one of: {expected})")
    return kind


def _kind_class(kind: str) -> str:
    """The kind as OnlyFor names it: a built-in kind, or PLUGIN."""
    return kind if kind in KINDS else PLUGIN


Kind = Annotated[
    str,
    AfterValidator(_known_kind),
    Problem(f"unknown kind {{input!r}} (expected one of: {', '.join(KINDS)})"),
]


# ---------------------------------------------------------------- checks

Loc = tuple[str | int, ...]  # a path into the document: ("credentials", 0, "kind")
_M = TypeVar("_M")


def _invalid(message: str, *at: str | int) -> PydanticCustomError:
    """A problem found across keys of a table; ``at`` is the key below the table it is about
    (pydantic's ``loc`` of the error ends at the table that was checked)."""
    return PydanticCustomError("dispatch_config", "{problem}", {"problem": message, "at": at})


def _loc(error: ErrorDetails) -> Loc:
    return (*error["loc"], *error.get("ctx", {}).get("at", ()))


def _unique(section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise _invalid(f"duplicate {section} name {name!r}", section, index, "name")
        seen.add(name)


def _marker(field: FieldInfo, kind: type[_M]) -> _M | None:
    """The field's ``kind`` marker, also from inside ``X | None`` and aliases."""
    for item in (*field.metadata, *_metadata(field.annotation)):
        if isinstance(item, kind):
            return item
    return None


def _metadata(annotation: Any) -> Iterator[Any]:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        yield from metadata
        yield from _metadata(base)
    else:
        for arg in get_args(annotation):
            yield from _metadata(arg)


# ---------------------------------------------------------------- the tables


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class CredentialConfig(_Table):
    """``[[credentials]]``: one provider account and the models it serves."""

    name: Text
    kind: Kind
    base_url: Annotated[Text | None, _SERVED] = None
    api_key_env: Annotated[Text | None, _SERVED] = None
    models: Strings | None = None  # None: list them from the server
    context_window: Count | None = None
    reasoning_effort: Annotated[Flag, _REMOTE] = False
    path: Annotated[Text | None, OnlyFor("local")] = None  # the GGUF file
    # Seconds of provider silence that fail a step; None: 600.
    read_timeout: Annotated[Seconds | None, _REMOTE] = None
    # Sampling (chat.providers.sampling): None leaves the server's (or the model card's) own.
    max_tokens: Count | None = None  # the answer's limit; wins over [runtime] max_tokens
    temperature: Temperature | None = None
    top_p: Share | None = None
    top_k: Count | None = None
    min_p: Annotated[Share | None, _NOT_ANTHROPIC] = None
    presence_penalty: Annotated[Penalty | None, _NOT_ANTHROPIC] = None
    frequency_penalty: Annotated[Penalty | None, _NOT_ANTHROPIC] = None
    seed: Annotated[Seed | None, _NOT_ANTHROPIC] = None
    repeat_penalty: Annotated[Positive | None, OnlyFor("local")] = None
    # Whether its models see images; None: what the server's listing says, else the known
    # models (chat.providers.catalog.known_vision).
    vision: Annotated[Vision | None, _REMOTE] = None
    # Settings of a plugin's provider, as its documentation says.
    options: Annotated[Table, OnlyFor(PLUGIN)] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        """An openai credential's base_url; a local one's model, named after its file."""
        if not isinstance(data, dict):
            return data
        if data.get("kind") == "openai":
            return {"base_url": OPENAI_DEFAULT_BASE_URL, **data}
        if data.get("kind") == "local" and "models" not in data:
            path = data.get("path")
            stem = Path(path).stem if isinstance(path, str) else ""
            return {**data, "models": (stem or EMBEDDED_MODEL,)}
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        if "/" in self.name:
            raise _invalid(f"credential name {self.name!r} must not contain '/'", "name")
        for key, field in type(self).model_fields.items():
            allowed = _marker(field, OnlyFor)
            kind = _kind_class(self.kind)
            if allowed and key in self.model_fields_set and kind not in allowed.kinds:
                raise _invalid(f"{key} is not allowed for a credential of kind {self.kind!r}", key)
        if self.models is not None and len(set(self.models)) != len(self.models):
            raise _invalid(f"credential {self.name!r} lists a model twice", "models")
        return self


class RuntimeConfig(_Table):
    """``[runtime]``: how turns run."""

    max_steps: Count = 25
    retry_delays: Delays = (0.5, 1.0, 2.0, 4.0)  # seconds; its length is the retry budget
    max_tokens: Count | None = None
    # A model with vision that describes images for models without it (else: a placeholder).
    vision_model: Text | None = None


class CompactionConfig(_Table):
    """``[compaction]``: how long conversations are compacted (docs/protocol.md#24-compaction)."""

    # The share of the model's window (%) at which a conversation is compacted before a
    # provider call, for conversations that set none; 0: never automatically.
    threshold: Percent = 85
    keep_messages: Annotated[int, Field(ge=0), Problem("{key} must be an integer ≥ 0")] = (
        10  # the newest messages a summary leaves as they are
    )
    summary_max_tokens: Count = 1024


class ToolsConfig(_Table):
    """``[tools]``: the built-in tools."""

    # None: settings.DISPATCH_WORKSPACE_ROOT (var/workspace); relative to the config file
    workspace_root: Directory | None = None
    run_shell: Flag = False
    run_shell_timeout: Seconds = 60.0
    run_shell_network: Flag = False  # the run_shell sandbox has no network unless true


class SystemPromptConfig(_Table):
    """``[system_prompt]``: the deployment's system prompt template (chat.prompts), inline
    (``template``) or in a file (``file``, relative to this file); a conversation resolves it
    at its first turn unless its owner set their own."""

    template: Annotated[str, Problem("{key} must be a string")] | None = None
    file: Directory | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.template is None) == (self.file is None):
            raise _invalid("system_prompt needs exactly one of template or file")
        if self.template is not None:
            _check_template(self.template, "template")
        return self


def _check_template(source: str, key: str) -> None:
    try:
        prompts.parse(source)
    except prompts.TemplateError as exc:
        where = f" (line {exc.line} of the template)" if exc.line is not None else ""
        raise _invalid(f"system_prompt.{key}: {exc.problem}{where}", key) from None


class McpServerConfig(_Table):
    """``[[mcp_servers]]``: an MCP server whose tools the agent gets."""

    name: Text
    command: Strings | None = None  # stdio
    url: Text | None = None  # streamable HTTP
    env: StringTable = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise _invalid(f"mcp server {self.name!r} needs exactly one of command or url")
        return self


# The embedded model: served when the config declares no credentials at all.
EMBEDDED_MODEL = "smollm2-135m-instruct"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
EMBEDDED_CREDENTIAL = CredentialConfig(name="local", kind="local", models=(EMBEDDED_MODEL,))


class _ConfigFile(_Table):
    """The top level of the file."""

    default_model: Text | None = None  # else the first model
    # Installed plugin distributions allowed to load (docs/plugins.md); others stay disabled.
    plugins: Names = ()
    runtime: RuntimeConfig = RuntimeConfig()
    compaction: CompactionConfig = CompactionConfig()
    tools: ToolsConfig = ToolsConfig()
    credentials: Tables[CredentialConfig] = ()
    mcp_servers: Tables[McpServerConfig] = ()
    system_prompt: SystemPromptConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique("credentials", [c.name for c in self.credentials])
        _unique("mcp_servers", [s.name for s in self.mcp_servers])
        self._check_plugin_kinds()
        if self.default_model is not None:
            self._check_model_name(self.default_model, "default_model")
        if self.runtime.vision_model is not None:
            self._check_model_name(self.runtime.vision_model, "runtime", "vision_model")
        return self

    def _check_plugin_kinds(self) -> None:
        """A plugin's kind is usable only when its distribution is in ``plugins``."""
        if all(c.kind in KINDS for c in self.credentials):
            return
        allowed = {normalize(name) for name in self.plugins}
        provided_by = installed_provider_kinds()
        for index, credential in enumerate(self.credentials):
            distribution = provided_by.get(credential.kind, "")
            if credential.kind not in KINDS and normalize(distribution) not in allowed:
                raise _invalid(
                    f"kind {credential.kind!r} comes from the plugin {distribution!r}, which "
                    f"plugins does not list (add it: plugins = [{distribution!r}])",
                    "credentials",
                    index,
                    "kind",
                )

    def _check_model_name(self, name: str, *at: str) -> None:
        """``name`` is a ``<credential>/<model>`` of the config; ``at`` is its key."""
        key = ".".join(at)
        credential_name, _, model = name.partition("/")
        if not model:
            raise _invalid(f"{key} must be '<credential>/<model>'", *at)
        by_name = {c.name: c for c in self.credentials or (EMBEDDED_CREDENTIAL,)}
        credential = by_name.get(credential_name)
        if credential is None:
            raise _invalid(
                f"{key} {name!r} names no credential (credentials: {', '.join(by_name)})", *at
            )
        if credential.models is not None and model not in credential.models:
            raise _invalid(
                f"{key} {name!r}: credential {credential_name!r} has no "
                f"model {model!r} (models: {', '.join(credential.models)})",
                *at,
            )


class DispatchConfig(_ConfigFile):
    """The whole config: the file's tables, and the file they were read from."""

    source: str | None = None  # None when there is no file
    # The system prompt template: ``[system_prompt] template``, or the text of its ``file``.
    system_prompt_template: str = ""


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
    try:
        parsed = _ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise _config_error(path, raw, exc) from exc
    return DispatchConfig(
        **dict(parsed), source=str(path), system_prompt_template=_system_prompt(path, parsed)
    )


def _system_prompt(path: Path, parsed: _ConfigFile) -> str:
    """The deployment's template, read from its file when it is one, and checked."""
    table = parsed.system_prompt
    if table is None:
        return ""
    if table.template is not None:
        return table.template
    assert table.file is not None
    file = table.file if table.file.is_absolute() else path.parent / table.file
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: system_prompt.file: cannot read {file}: {exc}") from exc
    try:
        prompts.parse(source)
    except prompts.TemplateError as exc:
        where = f"{file}, line {exc.line}" if exc.line is not None else str(file)
        raise ConfigError(f"{where}: {exc.problem} (system_prompt.file of {path})") from exc
    return source


# ---------------------------------------------------------------- errors


def _config_error(path: Path, raw: str, error: ValidationError) -> ConfigError:
    """One problem as ``<file>, line <n>: <problem>``: the first in the file, unknown keys
    before the rest (a misspelt key is the cause of the "required" error it also makes)."""
    lines = _key_lines(raw)

    def order(error: ErrorDetails) -> tuple[bool, float]:
        return error["type"] != "extra_forbidden", _line(lines, _loc(error)) or math.inf

    first = min(error.errors(), key=order)
    line = _line(lines, _loc(first))
    where = f"{path}, line {line}" if line is not None else str(path)
    return ConfigError(f"{where}: {_message(first)}")


def _message(error: ErrorDetails) -> str:
    loc = error["loc"]
    table, key, field = _walk(loc)
    if error["type"] == "dispatch_config":
        return error["msg"]
    if error["type"] == "missing":
        return f"{_dotted(loc)} is required"
    if error["type"] == "extra_forbidden":
        expected = ", ".join(sorted(table.model_fields))
        return f"unknown key {_dotted(loc)!r} (expected one of: {expected})"
    problem = _marker(field, Problem) if field is not None else None
    if problem is not None:
        return problem.template.format(key=_dotted(key), input=error["input"])
    if error["type"] == "model_type":
        return f"{_dotted(key)} must be a table"
    return f"{_dotted(loc)}: {error['msg']}"


def _walk(loc: Loc) -> tuple[type[BaseModel], Loc, FieldInfo | None]:
    """Follow ``loc`` from the top of the file: the last table reached, and the last key of a
    table passed (with its own loc): the key whose value type the error is about."""
    table: type[BaseModel] = _ConfigFile
    key: Loc = ()
    field: FieldInfo | None = None
    annotation: Any = _ConfigFile
    for end, part in enumerate(loc, start=1):
        if isinstance(part, int):
            continue  # an item of an array: the same value type
        inner = _table_in(annotation)
        if inner is None:
            break
        table = inner
        if part not in inner.model_fields:
            break
        key, field = loc[:end], inner.model_fields[part]
        annotation = field.annotation
    return table, key, field


def _table_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _table_in(arg)
        if found is not None:
            return found
    return None


def _dotted(key: Loc) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, else of the nearest table or key around it that has one."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _key_lines(raw: str) -> dict[Loc, int]:
    """Map table headers and keys to their 1-based line, so errors can point at them.

    A light scan (not a TOML parser): enough for tables, arrays of tables and (dotted) keys.
    """
    lines: dict[Loc, int] = {}
    counts: dict[str, int] = {}
    table: Loc = ()
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
