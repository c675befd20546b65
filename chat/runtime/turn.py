"""``run_turn``: one user message → the agent's complete response (docs/protocol.md#4-the-turn).

The kernel is pure asyncio. It talks to the outside only through ``TurnPorts``: a provider,
tools, an event sink and the persistence hooks. It decides the order of everything; the
ports decide where things go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chat.runtime.ids import step_id as make_step_id
from chat.runtime.observer import NO_OBSERVER, TurnObserver
from chat.runtime.reconcile import reconcile
from chat.runtime.types import (
    Finish,
    Message,
    PromptProgress,
    Provider,
    ProviderError,
    ProviderRequest,
    ReasoningDelta,
    StatusChange,
    StepMetrics,
    TextDelta,
    Tool,
    ToolCallReady,
    ToolContext,
    ToolOutcome,
    TurnMetrics,
    Usage,
    UsageReport,
    WireChunk,
    WireEvent,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
DEFAULT_MAX_STEPS = 25


@dataclass
class TurnConfig:
    conversation_id: str
    turn_id: str
    prompt: str
    history: list[Message]  # the conversation so far, raw (reconciled here before use)
    # The prompt's ``image`` and ``file`` chunks (chat.runtime.attachments), after its text.
    attachments: Sequence[WireChunk] = ()
    model: str = ""  # "<credential>/<model>", reported in metrics
    provider_model: str = ""  # the part the provider is asked for
    reasoning_effort: str | None = None
    cwd: str = "."
    max_steps: int = DEFAULT_MAX_STEPS
    max_tokens: int | None = None
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS
    # Sent as the first (system) message of every provider request; "" sends none. The same
    # bytes on every request of a conversation, so providers' prompt caches keep working.
    system_prompt: str = ""


def request_messages(system_prompt: str, history: list[Message]) -> list[Message]:
    """What a step sends the provider: the system prompt, then the reconciled history."""
    system = [Message("system", [{"type": "system", "text": system_prompt}])]
    return [*(system if system_prompt else []), *reconcile(history)]


@dataclass
class TurnPorts:
    provider: Provider
    emit: Callable[[WireEvent], Awaitable[None]]
    persist_user: Callable[[Message], Awaitable[None]]
    # The step's assistant message and tool message, committed in one transaction.
    persist_step: Callable[[list[Message]], Awaitable[None]]
    drain_queue: Callable[[], Awaitable[list[str]]]
    # Persist TurnMetrics and mark the turn sealed; returns once committed.
    seal: Callable[[TurnMetrics], Awaitable[None]]
    tools: Mapping[str, Tool] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Told of the turn's boundaries (never of single deltas): metrics and traces.
    observer: TurnObserver = NO_OBSERVER


@dataclass
class _Step:
    index: int
    id: str
    chunks: list[WireChunk] = field(default_factory=list)
    text: WireChunk | None = None
    thinking: WireChunk | None = None
    calls: list[WireChunk] = field(default_factory=list)
    results: dict[str, WireChunk] = field(default_factory=dict)
    usage: Usage | None = None
    finish_reason: str = "stop"
    error: ProviderError | None = None
    stream_start: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    stream_end: float | None = None
    committed: bool = False  # its messages are persisted (or it had none)
    streamed_tokens: int = 0  # text and reasoning pieces that streamed in (≈ tokens)

    @property
    def has_content(self) -> bool:
        return bool(self.chunks)

    def cut_short(self, now: float) -> None:
        """The stream ended without finishing (stopped, failed): for its timings it ended
        at its last token, since the time after that (a stall, the wait for the user's
        stop) produced nothing."""
        if self.stream_end is None:
            self.stream_end = self.last_token if self.last_token is not None else now

    def measured_usage(self) -> Usage:
        """The provider's usage; without it, the output counted from the streamed deltas
        (marked ``estimated``; the input is unknown)."""
        if self.usage is not None:
            return self.usage
        if self.streamed_tokens:
            return Usage(output_tokens=self.streamed_tokens, estimated=True)
        return Usage()

    def metrics(self) -> StepMetrics:
        """The step's usage so far and its timings (docs/protocol.md#2-chunks-and-the-log), as far as the stream got."""
        ttft = decode = total = None
        if self.stream_start is not None and self.stream_end is not None:
            if self.first_token is not None:
                ttft = _ms(self.first_token - self.stream_start)
                decode = _ms(self.stream_end - self.first_token)
            total = _ms(self.stream_end - self.stream_start)
        return StepMetrics(self.id, self.measured_usage(), ttft, decode, total)


def _drop_unfinished_calls(step: _Step) -> None:
    """Keep only the step's tool calls that have a result (docs/protocol.md#4-the-turn: never a call without it)."""
    step.calls = [c for c in step.calls if c["toolCallId"] in step.results]
    kept_ids = {c["toolCallId"] for c in step.calls}
    step.chunks = [
        c for c in step.chunks if c["type"] != "tool-call" or c["toolCallId"] in kept_ids
    ]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class TurnAborted(Exception):
    pass


class TurnRunner:
    """Runs one turn. ``abort()`` stops it at the next event boundary; ``interrupt()`` too,
    dropping the unfinished step."""

    def __init__(self, config: TurnConfig, ports: TurnPorts):
        self.config = config
        self.ports = ports
        self.aborted = False
        self.interrupted = False
        self._inner: asyncio.Task[Any] | None = None
        self._steps: list[_Step] = []

    def abort(self) -> None:
        self.aborted = True
        if self._inner is not None:
            self._inner.cancel()

    def interrupt(self) -> None:
        """End the turn as ``interrupted`` at the next event boundary, keeping only the steps
        already committed (as if its server had died, but with done and turn-sealed): what a
        worker that must exit does with the turns still running at its deadline."""
        self.interrupted = True
        self.abort()

    # ------------------------------------------------------------------ events

    async def _emit(self, type_: str, **fields: Any) -> None:
        event = {"type": type_, "conversationId": self.config.conversation_id}
        if type_ != "status":
            event["turnId"] = self.config.turn_id
        event.update(fields)
        await self.ports.emit(event)

    # ------------------------------------------------------------------ the turn

    async def run(self) -> TurnMetrics:
        """Run the turn to its end; returns the TurnMetrics (docs/protocol.md#2-chunks-and-the-log) that were sealed."""
        cfg, ports = self.config, self.ports
        started = ports.clock()
        ports.observer.turn_started()
        attachments = [dict(chunk) for chunk in cfg.attachments]
        await self._emit(
            "user-message", text=cfg.prompt, **({"attachments": attachments} if attachments else {})
        )
        await self._emit("turn-start")
        reason = "error"
        try:
            # The text chunk comes first even when empty: a user message is one text chunk
            # followed by its attachments, so a client regroups the log exactly.
            user = Message("user", [{"type": "text", "text": cfg.prompt}, *attachments])
            await ports.persist_user(user)
            history = [*cfg.history, user]
            reason = await self._steps_loop(history)
        except TurnAborted:
            reason = self._stop_reason()
        except Exception as exc:  # a port failed: the turn still ends with done + turn-sealed
            if self.aborted:
                reason = self._stop_reason()
            else:
                log.error(
                    "conversation %s turn %s: turn failed: %s: %s",
                    cfg.conversation_id, cfg.turn_id, type(exc).__name__, exc,
                )  # fmt: skip
                await self._emit("error", message=f"turn failed: {exc}")
                reason = "error"
        return await self._finish(reason, started)

    def _stop_reason(self) -> str:
        return "interrupted" if self.interrupted else "aborted"

    async def _finish(self, reason: str, started: float) -> TurnMetrics:
        kept = self._steps
        if self.interrupted:  # the unfinished step is not in the log: not in metrics either
            kept = [s for s in kept if s.committed]
        # Only steps that called the provider count: an abort can leave a next step unstarted.
        ran = [s for s in kept if s.stream_start is not None]
        steps = tuple(s.metrics() for s in ran)
        # The context is known from the provider's own usage only (an estimate has no input).
        last = next((s.usage for s in reversed(ran) if s.usage is not None), None)
        metrics = TurnMetrics(
            turn_id=self.config.turn_id,
            finish_reason=reason,
            usage=sum((s.usage for s in steps), Usage()),
            model=self.config.model or None,
            duration_ms=_ms(self.ports.clock() - started),
            context_size=last.input_tokens + last.output_tokens if last is not None else None,
            steps=steps,
        )
        done: dict[str, Any] = {"reason": reason, "durationMs": metrics.duration_ms}
        if any(s.usage is not None or s.streamed_tokens for s in ran):
            done["usage"] = metrics.usage.to_wire()
        if metrics.context_size is not None:
            done["contextSize"] = metrics.context_size
        try:
            await self._emit("done", **done)
            await self.ports.seal(metrics)
            await self._emit("turn-sealed")
        finally:
            self.ports.observer.turn_ended(metrics)
        return metrics

    async def _steps_loop(self, history: list[Message]) -> str:
        cfg = self.config
        for index in range(cfg.max_steps):
            step = _Step(index, make_step_id(cfg.turn_id, index))
            self._steps.append(step)
            try:
                messages = request_messages(cfg.system_prompt, history)
                await self._interruptible(self._stream_step(step, messages), step)
                await self._emit("step-complete", stepId=step.id, **step.metrics().timing_wire())
                if step.error is None and step.calls:
                    await self._interruptible(self._run_tools(step), step)
            except TurnAborted:
                if not self.interrupted:
                    await self._persist_step(step, history)  # the partial text/thinking
                raise
            if step.error is not None:
                _drop_unfinished_calls(step)  # they never ran: no call without its result
                error = {"type": "error", "message": step.error.message}
                if step.error.code:
                    error["code"] = step.error.code
                step.chunks.append(error)
                await self._persist_step(step, history)
                fields = {"code": step.error.code} if step.error.code else {}
                await self._emit("error", message=step.error.message, **fields)
                return "error"
            await self._persist_step(step, history)
            if not step.calls:
                return step.finish_reason if step.finish_reason != "tool-calls" else "stop"
            if self.aborted:
                raise TurnAborted
            queued = await self.ports.drain_queue()
            if queued:
                text = "\n\n".join(queued)
                await self._emit("steering", text=text)
                steering = Message("user", [{"type": "text", "text": text}])
                await self.ports.persist_user(steering)
                history.append(steering)
        return "max-steps"

    async def _interruptible(self, work: Coroutine[Any, Any, None], step: _Step) -> None:
        """Run ``work`` as the turn's inner task so that ``abort()`` can cancel it."""
        if self.aborted:
            work.close()  # never started: close it so it is not left un-awaited
            raise self._aborted_in(step)
        self._inner = asyncio.ensure_future(work)
        try:
            await self._inner
        except asyncio.CancelledError:
            if not self.aborted:
                raise  # the turn itself is being cancelled, not aborted
        finally:
            self._inner = None
        if self.aborted:
            raise self._aborted_in(step)

    def _aborted_in(self, step: _Step) -> TurnAborted:
        """Abort rule: keep partial text/thinking and finished call/result pairs only."""
        step.cut_short(self.ports.clock())
        _drop_unfinished_calls(step)
        return TurnAborted()

    async def _persist_step(self, step: _Step, history: list[Message]) -> None:
        """Commit the step's assistant message and tool message in one ``persist_step`` call."""
        messages = []
        if step.chunks:
            messages.append(Message("assistant", step.chunks))
        results = [step.results[c["toolCallId"]] for c in step.calls]
        if results:
            messages.append(Message("tool", results))
        if messages:
            await self.ports.persist_step(messages)
            history.extend(messages)
        step.committed = True

    # ------------------------------------------------------------------ streaming

    async def _stream_step(self, step: _Step, messages: list[Message]) -> None:
        cfg, ports = self.config, self.ports
        request = ProviderRequest(
            model=cfg.provider_model,
            messages=messages,
            tools=[tool.spec for tool in ports.tools.values()],
            reasoning_effort=cfg.reasoning_effort,
            max_tokens=cfg.max_tokens,
        )
        ports.observer.step_started(step.id, request)
        try:
            await self._stream_attempts(step, request)
        finally:
            # Cancelled mid-stream (an abort): it ended at its last token (cut_short).
            step.cut_short(ports.clock())
            reason = "error" if step.error else "aborted" if self.aborted else step.finish_reason
            ports.observer.step_ended(step.metrics(), reason, step.error)

    async def _stream_attempts(self, step: _Step, request: ProviderRequest) -> None:
        """Stream the step, retrying retryable errors while it has no content yet."""
        cfg, ports = self.config, self.ports
        attempt = 0
        while True:
            step.stream_start = ports.clock()
            try:
                async with contextlib.aclosing(ports.provider.stream(request)) as stream:  # type: ignore[type-var]
                    async for event in stream:
                        if self.aborted:
                            break  # the next event boundary; abort() may not have cancelled us
                        await self._on_provider_event(step, event)
                if self.aborted:
                    step.cut_short(ports.clock())
                else:
                    step.stream_end = ports.clock()
                if attempt:
                    log.warning(
                        "conversation %s turn %s step %d: the provider recovered after %d retries",
                        cfg.conversation_id, cfg.turn_id, step.index, attempt,
                    )  # fmt: skip
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                step.stream_end = None
                step.cut_short(ports.clock())
                error = (
                    exc
                    if isinstance(exc, ProviderError)
                    else ProviderError(f"provider failed: {exc}")
                )
                if error.retryable and not step.has_content and attempt < len(cfg.retry_delays):
                    delay = cfg.retry_delays[attempt]
                    attempt += 1
                    ports.observer.provider_retry(step.id, error, attempt)
                    self._log_failure(step, error, f"retry {attempt} in {delay:g}s")
                    fields = {"code": error.code} if error.code else {}
                    await self._emit(
                        "provider-retry",
                        attempt=attempt,
                        delayMs=_ms(delay),
                        message=error.message,
                        **fields,
                    )
                    await ports.sleep(delay)
                    continue
                outcome = f"gave up after {attempt} retries" if error.retryable else "not retryable"
                self._log_failure(step, error, outcome, level=logging.ERROR)
                step.error = error
                return

    def _log_failure(
        self, step: _Step, error: ProviderError, outcome: str, level: int = logging.WARNING
    ) -> None:
        """One line for the operator: ids, the error's code and message (the adapters word
        it from the status and the server's error; never the conversation's text)."""
        log.log(
            level,
            "conversation %s turn %s step %d: provider failed (%s): %s; %s",
            self.config.conversation_id, self.config.turn_id, step.index,
            error.code or "error", error.message, outcome,
        )  # fmt: skip

    def _token(self, step: _Step, tokens: int) -> None:
        now = self.ports.clock()
        if step.first_token is None:
            step.first_token = now
        step.last_token = now
        step.streamed_tokens += tokens

    async def _on_provider_event(self, step: _Step, event: object) -> None:
        if isinstance(event, TextDelta):
            if not event.text:
                return
            self._token(step, event.tokens)
            if step.text is None:
                step.text = {"type": "text", "text": ""}
                step.chunks.append(step.text)
            step.text["text"] += event.text
            await self._emit("text-delta", delta=event.text)
        elif isinstance(event, ReasoningDelta):
            if not event.text:
                return
            self._token(step, event.tokens)
            if step.thinking is None:
                step.thinking = {"type": "thinking", "text": ""}
                step.chunks.append(step.thinking)
            step.thinking["text"] += event.text
            await self._emit("reasoning-delta", delta=event.text)
        elif isinstance(event, ToolCallReady):
            call = {
                "type": "tool-call",
                "toolCallId": event.tool_call_id,
                "toolName": event.tool_name,
                "input": event.input,
                "stepId": step.id,
            }
            step.calls.append(call)
            step.chunks.append(call)
            await self._emit(
                "tool-call",
                stepId=step.id,
                toolCallId=event.tool_call_id,
                toolName=event.tool_name,
                input=event.input,
            )
        elif isinstance(event, UsageReport):
            step.usage = event.usage
            await self._emit("usage", stepId=step.id, usage=event.usage.to_wire())
        elif isinstance(event, Finish):
            step.finish_reason = event.reason
        elif isinstance(event, StatusChange):
            await self._emit("status", status=event.status)
        elif isinstance(event, PromptProgress):
            await self._emit("prompt-progress", stepId=step.id, done=event.done, total=event.total)

    # ------------------------------------------------------------------ tools

    async def _run_tools(self, step: _Step) -> None:
        """Run the step's calls: identical calls once; safe tools together, unsafe alone."""
        runs: dict[str, asyncio.Future[tuple[ToolOutcome, float]]] = {}
        batch: list[WireChunk] = []

        async def flush() -> None:
            if batch:
                await asyncio.gather(*(self._finish_call(step, c, runs) for c in batch))
                batch.clear()

        for call in step.calls:
            tool = self.ports.tools.get(call["toolName"])
            if tool is not None and not tool.concurrency_safe:
                await flush()
                await self._finish_call(step, call, runs)
            else:
                batch.append(call)
        await flush()

    async def _finish_call(
        self,
        step: _Step,
        call: WireChunk,
        runs: dict[str, asyncio.Future[tuple[ToolOutcome, float]]],
    ) -> None:
        key = call["toolName"] + "\0" + json.dumps(call["input"], sort_keys=True)
        first = key not in runs
        if first:
            runs[key] = asyncio.ensure_future(self._execute(step, call))
        outcome, duration_ms = await runs[key]
        result = {
            "type": "tool-result",
            "toolCallId": call["toolCallId"],
            "toolName": call["toolName"],
            "content": outcome.content,
            "isError": outcome.is_error,
            "stepId": step.id,
        }
        step.results[call["toolCallId"]] = result
        await self._emit(
            "tool-result",
            stepId=step.id,
            toolCallId=call["toolCallId"],
            toolName=call["toolName"],
            content=outcome.content,
            isError=outcome.is_error,
            durationMs=duration_ms,
        )

    async def _execute(self, step: _Step, call: WireChunk) -> tuple[ToolOutcome, float]:
        """Run one call; its outcome and run time in ms (reported to the observer too)."""
        started = self.ports.clock()
        self.ports.observer.tool_started(step.id, call)
        outcome: ToolOutcome | None = None  # stays None when the call is cancelled
        try:
            outcome = await self._run_tool(call)
        finally:
            duration_ms = _ms(self.ports.clock() - started)
            self.ports.observer.tool_ended(step.id, call, outcome, duration_ms)
        return outcome, duration_ms

    async def _run_tool(self, call: WireChunk) -> ToolOutcome:
        tool = self.ports.tools.get(call["toolName"])
        if tool is None:
            return ToolOutcome(f"unknown tool: {call['toolName']}", is_error=True)

        async def emit_output(data: str, stream: str) -> None:
            await self._emit("tool-output", toolCallId=call["toolCallId"], data=data, stream=stream)

        try:
            return await tool.run(call["input"], ToolContext(self.config.cwd, emit_output))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return ToolOutcome(f"{type(exc).__name__}: {exc}", is_error=True)


async def run_turn(config: TurnConfig, ports: TurnPorts) -> TurnMetrics:
    """Run one turn (docs/protocol.md#4-the-turn) and return its sealed TurnMetrics."""
    return await TurnRunner(config, ports).run()
