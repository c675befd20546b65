"""What every built-in tool shares: argument validation, output caps, the time budget of work
done in threads, and error outcomes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.sandbox import SandboxError

# The most characters of output a tool hands back to the model.
OUTPUT_CAP = 50_000
# Seconds of work (walking, reading, matching) one call of a file tool may spend.
TIME_BUDGET = 20.0
# Threads for the file tools' work, apart from the loop's default executor, so that slow tool
# calls never make the rest of the server (DNS lookups, sync_to_async …) wait for a thread.
TOOL_THREADS = 4

_executor = ThreadPoolExecutor(max_workers=TOOL_THREADS, thread_name_prefix="dispatch-tool")
_T = TypeVar("_T")

_TYPE_CHECKS = {
    "string": lambda value: isinstance(value, str),
    # bool is an int subclass in Python but not a JSON integer.
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
}


def truncate(text: str, cap: int = OUTPUT_CAP) -> str:
    """``text`` cut to ``cap`` characters plus a note saying how much was left out."""
    if len(text) <= cap:
        return text
    return f"{text[:cap]}\n… [truncated: {len(text) - cap:,} more characters]"


class Budget:
    """The time one tool call's work in a thread may take, checked by that work between steps.

    A thread cannot be killed, so work that may take long (walking a tree, reading a big file)
    asks ``exhausted()`` between bounded steps and stops, with what it has, once the budget is
    spent or the call was cancelled (the turn was stopped).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._cancelled = threading.Event()

    def start(self) -> None:
        """Start the clock (the work may have waited for a free thread)."""
        self._deadline = time.monotonic() + self.seconds

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def exhausted(self) -> bool:
        """Whether the work must stop now: out of time, or nobody waits for it any more."""
        return self._cancelled.is_set() or time.monotonic() >= self._deadline


async def run_bounded(work: Callable[..., _T], *args: Any) -> _T:
    """Run ``work(budget, *args)`` in a tool thread with a fresh ``Budget(TIME_BUDGET)``.

    Cancelling the caller cancels the budget, so the thread stops at its next check.
    """
    budget = Budget(TIME_BUDGET)

    def call() -> _T:
        budget.start()
        return work(budget, *args)

    future = asyncio.get_running_loop().run_in_executor(_executor, call)
    try:
        return await future
    except asyncio.CancelledError:
        budget.cancel()
        raise


def object_schema(properties: Mapping[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """The JSON schema of a tool's arguments: an object with exactly these properties."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


def validate(schema: Mapping[str, Any], arguments: Any) -> str | None:
    """Check ``arguments`` against an ``object_schema``; a clear message or None when valid.

    Supports what the built-in schemas use: ``type`` (string, integer, number, boolean),
    ``minimum``/``exclusiveMinimum``, ``required`` and ``additionalProperties: false``.
    """
    if not isinstance(arguments, dict):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    properties = schema["properties"]
    for name in arguments:
        if name not in properties:
            return f"unknown argument {name!r} (expected: {', '.join(properties)})"
    for name in schema["required"]:
        if name not in arguments:
            return f"missing required argument {name!r}"
    for name, value in arguments.items():
        rule = properties[name]
        if not _TYPE_CHECKS[rule["type"]](value):
            return f"argument {name!r} must be {_a(rule['type'])}, got {_json_type(value)}"
        if "minimum" in rule and value < rule["minimum"]:
            return f"argument {name!r} must be at least {rule['minimum']}, got {value}"
        if "exclusiveMinimum" in rule and value <= rule["exclusiveMinimum"]:
            return f"argument {name!r} must be greater than {rule['exclusiveMinimum']}, got {value}"
    return None


def _a(type_name: str) -> str:
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


class BuiltinTool:
    """A tool whose arguments are validated before ``execute`` runs.

    Subclasses set ``spec`` and ``concurrency_safe`` and implement ``execute``; a SandboxError
    or ToolFailure raised there becomes an isError outcome with its message.
    """

    spec: ToolSpec
    concurrency_safe: bool

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        """Validate ``input`` against the spec, then execute; expected failures are isError."""
        problem = validate(self.spec.parameters, input)
        if problem is not None:
            return ToolOutcome(f"{self.spec.name}: {problem}", is_error=True)
        try:
            return await self.execute(input, ctx)
        except (SandboxError, ToolFailure) as exc:
            return ToolOutcome(str(exc), is_error=True)
        except OSError as exc:  # permissions, a file vanishing mid-call, a full disk …
            return ToolOutcome(f"{self.spec.name} failed: {exc.strerror or exc}", is_error=True)

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        raise NotImplementedError


class ToolFailure(Exception):
    """An expected failure of a tool (file missing, not unique …); becomes an isError outcome."""
