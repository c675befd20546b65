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
from typing import Any, Literal

from chat.runtime.context import (
    Budget,
    cut_index,
    effective,
    estimate_message_tokens,
    estimate_request_tokens,
    overflow_message,
    request_messages,
    summary_messages,
    transcript,
)
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
DEFAULT_COMPACT_THRESHOLD = 0.85
DEFAULT_KEEP_MESSAGES = 10
DEFAULT_SUMMARY_MAX_TOKENS = 1024
# How often a summary's input is trimmed to fit the window before the compaction gives up.
SUMMARY_FIT_ATTEMPTS = 4

TurnKind = Literal["turn", "compaction"]


@dataclass
class TurnConfig:
    """One turn's settings. ``kind="compaction"`` is a turn that only compacts the
    conversation (a manual compaction: no prompt, no steps; docs/protocol.md#24-compaction)."""

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
    kind: TurnKind = "turn"
    continuation: bool = False  # the prompt asks the model to continue its cut answer
    # The context budget (docs/protocol.md#410-the-context-budget): the model's window (None:
    # unknown, no budget), the share of it at which the conversation is compacted before a
    # provider call (0: never automatically), the messages a compaction keeps verbatim.
    context_window: int | None = None
    compact_threshold: float = DEFAULT_COMPACT_THRESHOLD
    keep_messages: int = DEFAULT_KEEP_MESSAGES
    summary_max_tokens: int = DEFAULT_SUMMARY_MAX_TOKENS
    # The measured size (input + output tokens) of the history as the last turn left it:
    # the base of the estimate for providers that cannot count tokens.
    context_size: int | None = None
    # Sent as the first (system) message of every provider request; "" sends none. The same
    # bytes on every request of a conversation, so providers' prompt caches keep working.
    system_prompt: str = ""


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
    # The exact input tokens of a request, for a provider that can tell (the embedded model);
    # None: estimated (docs/protocol.md#410-the-context-budget).
    count_tokens: Callable[[ProviderRequest], Awaitable[int]] | None = None
    # Told of the turn's boundaries (never of single deltas): metrics and traces.
    observer: TurnObserver = NO_OBSERVER


@dataclass
class _Step:
    index: int
    id: str
    kind: str = "step"  # or "compaction": the model call that writes a summary
    chunks: list[WireChunk] = field(default_factory=list)
    text: WireChunk | None = None
    thinking: WireChunk | None = None
    calls: list[WireChunk] = field(default_factory=list)
    results: dict[str, WireChunk] = field(default_factory=dict)
    usage: Usage | None = None
    finish_reason: str = "stop"
    error: ProviderError | None = None
    summary: str = ""  # a compaction step's text
    stream_start: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    stream_end: float | None = None
    committed: bool = False  # its messages are persisted (or it had none)
    streamed_tokens: int = 0  # text and reasoning pieces that streamed in (≈ tokens)

    @property
    def has_content(self) -> bool:
        return bool(self.chunks) or bool(self.summary)

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
        return StepMetrics(self.id, self.measured_usage(), ttft, decode, total, self.kind)


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


class ContextOverflow(Exception):
    """The next request does not fit the model's window."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class CompactionFailed(Exception):
    """A compaction did not produce a summary; ``code`` says why."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


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
        self._compactions = 0
        self.budget = Budget.for_model(
            config.context_window, config.compact_threshold, config.max_tokens
        )
        # (n, tokens): a request whose effective history began with these n messages took
        # ``tokens`` (measured input + output): the base of the next estimate.
        self._baseline: tuple[int, int] | None = None
        if config.context_size is not None:
            self._baseline = (len(effective(config.history).messages), config.context_size)
        self._context_size: int | None = None  # the turn's contextSize so far

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
        if self.config.kind == "compaction":
            return await self._run_compaction()
        cfg, ports = self.config, self.ports
        started = ports.clock()
        ports.observer.turn_started()
        attachments = [dict(chunk) for chunk in cfg.attachments]
        continuation = {"continuation": True} if cfg.continuation else {}
        await self._emit(
            "user-message",
            text=cfg.prompt,
            **continuation,
            **({"attachments": attachments} if attachments else {}),
        )
        await self._emit("turn-start")
        reason = "error"
        try:
            # The text chunk comes first even when empty: a user message is one text chunk
            # followed by its attachments, so a client regroups the log exactly.
            user = Message(
                "user", [{"type": "text", "text": cfg.prompt, **continuation}, *attachments]
            )
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

    async def _run_compaction(self) -> TurnMetrics:
        """A manual compaction: compact the history, then seal (docs/protocol.md#24-compaction)."""
        started = self.ports.clock()
        self.ports.observer.turn_started()
        reason = "error"
        try:
            await self._compact(list(self.config.history), trigger="manual")
            reason = "compacted"
        except TurnAborted:
            reason = "aborted"
        except CompactionFailed:
            reason = "error"  # compaction-failed said why
        except Exception as exc:
            if self.aborted:
                reason = "aborted"
            else:
                await self._emit("error", message=f"compaction failed: {exc}")
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
        metrics = TurnMetrics(
            turn_id=self.config.turn_id,
            finish_reason=reason,
            usage=sum((s.usage for s in steps), Usage()),
            model=self.config.model or None,
            duration_ms=_ms(self.ports.clock() - started),
            context_size=self._context_size,
            steps=steps,
            kind=self.config.kind,
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
            try:
                messages, view = await self._prepare(history)
            except ContextOverflow as exc:
                error = {"type": "error", "message": exc.message, "code": "context-overflow"}
                await self.ports.persist_step([Message("assistant", [error])])
                await self._emit("error", message=exc.message, code="context-overflow")
                return "error"
            step = _Step(index, make_step_id(cfg.turn_id, index))
            self._steps.append(step)
            try:
                request = self._request(messages, max_tokens=cfg.max_tokens)
                await self._interruptible(
                    self._stream(step, request, self._on_provider_event), step
                )
                await self._emit("step-complete", stepId=step.id, **step.metrics().timing_wire())
                if step.error is None and step.calls:
                    await self._interruptible(self._run_tools(step), step)
            except TurnAborted:
                if not self.interrupted:
                    await self._persist_step(step, history)  # the partial text/thinking
                    if step.usage is not None:  # the provider told what the model read
                        self._context_size = step.usage.input_tokens + step.usage.output_tokens
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
            if step.usage is not None:
                # The next request starts with this one and its answer: a measured base.
                answered = len(view) + (1 if step.chunks else 0)
                self._baseline = (answered, step.usage.input_tokens + step.usage.output_tokens)
                self._context_size = self._baseline[1]
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

    def _request(self, messages: list[Message], *, max_tokens: int | None) -> ProviderRequest:
        return ProviderRequest(
            model=self.config.provider_model,
            messages=messages,
            tools=[tool.spec for tool in self.ports.tools.values()],
            reasoning_effort=self.config.reasoning_effort,
            max_tokens=max_tokens,
        )

    # ------------------------------------------------------------------ the context budget

    async def _prepare(self, history: list[Message]) -> tuple[list[Message], list[Message]]:
        """The next request's messages and the effective history they come from, after the
        context budget's checks: compact when the request reaches the threshold, refuse it
        (ContextOverflow) when it does not fit the window — before any provider call."""
        budget = self.budget
        messages, view = self._messages(history)
        if budget.window is None:
            return messages, view
        tokens = await self._measure(messages, view)
        failure = ""
        if budget.wants_compaction(tokens):
            try:
                await self._compact(history, trigger="auto")
            except CompactionFailed as exc:
                failure = f"automatic compaction failed: {exc.message}"
            else:
                messages, view = self._messages(history)
                tokens = await self._measure(messages, view)
        if not budget.fits(tokens):
            if not failure and budget.threshold <= 0:
                failure = "automatic compaction is off"
            raise ContextOverflow(overflow_message(tokens, budget, self.config.model, failure))
        return messages, view

    def _messages(self, history: list[Message]) -> tuple[list[Message], list[Message]]:
        """(the request's messages, reconciled; the effective history they were made from)."""
        return (
            reconcile(request_messages(history, system_prompt=self.config.system_prompt)),
            effective(history).messages,
        )

    async def _measure(self, messages: list[Message], view: list[Message]) -> int:
        """The input tokens of a request of these messages: counted when the provider can,
        else the last measured request's tokens plus an estimate of what was added since."""
        request = self._request(messages, max_tokens=None)
        if self.ports.count_tokens is not None:
            try:
                return await self.ports.count_tokens(request)
            except asyncio.CancelledError:
                raise
            except Exception:  # the stream will say what is wrong; estimate meanwhile
                pass
        if self._baseline is not None and self._baseline[0] <= len(view):
            count, tokens = self._baseline
            return tokens + sum(estimate_message_tokens(m) for m in view[count:])
        return estimate_request_tokens(messages, request.tools)

    # ------------------------------------------------------------------ compaction

    async def _compact(self, history: list[Message], *, trigger: str) -> None:
        """Summarize the history up to a cut and append the summary to it (and the log).

        Raises CompactionFailed (after ``compaction-failed``) when there is nothing to
        summarize or no summary came, TurnAborted when stopped (nothing is written then).
        """
        budget, cfg = self.budget, self.config
        view = effective(history)
        # The requests' fixed part (the tools' descriptions) takes room from what is kept.
        overhead = await self._count(self._request([], max_tokens=None)) if budget.window else 0
        keep_tokens = budget.keep_tokens(overhead)
        cut = cut_index(view.messages, keep=cfg.keep_messages, keep_tokens=keep_tokens)
        if cut <= 0:
            too_short = (
                f"the conversation is too short to compact: the last {cfg.keep_messages} "
                "messages are kept as they are"
            )
            if trigger == "manual":
                await self._emit("compaction-failed", trigger=trigger, message=too_short,
                                 code="too-short")  # fmt: skip
            raise CompactionFailed(too_short, "too-short")
        step = _Step(self._compactions, f"{cfg.turn_id}#c{self._compactions}", kind="compaction")
        self._compactions += 1
        self._steps.append(step)
        base = {"stepId": step.id, "trigger": trigger}
        await self._emit("compaction-start", **base, messages=cut)
        try:
            request = await self._summary_request(
                view.summary,
                view.messages[:cut],
                budget.summary_tokens(cfg.summary_max_tokens, overhead),
            )
            await self._interruptible(self._stream(step, request, self._on_summary_event), step)
        except TurnAborted:
            await self._emit("compaction-failed", **base, message="the compaction was stopped",
                             code="aborted", **self._step_wire(step))  # fmt: skip
            raise
        except CompactionFailed as exc:
            await self._emit("compaction-failed", **base, message=exc.message, code=exc.code)
            raise
        summary = step.summary.strip()
        if step.error is not None or not summary:
            if step.error is not None:
                failure = CompactionFailed(step.error.message, step.error.code or "provider")
            else:
                failure = CompactionFailed("the model returned an empty summary", "empty-summary")
            await self._emit("compaction-failed", **base, message=failure.message,
                             code=failure.code, **self._step_wire(step))  # fmt: skip
            raise failure
        covered = view.messages[cut - 1].seq
        chunk: WireChunk = {
            "type": "compaction",
            "summary": summary,
            "upToSeq": covered if covered is not None else view.up_to_seq,
            "replacedMessages": cut,
            "keptMessages": len(view.messages) - cut,
            "trigger": trigger,
            "stepId": step.id,
        }
        compaction = Message("system", [chunk])
        await self.ports.persist_step([compaction])
        history.append(compaction)
        messages, kept = self._messages(history)
        self._baseline = None  # what was measured before no longer describes the request
        self._context_size = await self._measure(messages, kept)
        await self._emit(
            "compaction-done",
            **base,
            seq=compaction.seq,
            upToSeq=chunk["upToSeq"],
            replacedMessages=cut,
            keptMessages=chunk["keptMessages"],
            summary=summary,
            contextSize=self._context_size,
            **self._step_wire(step),
        )

    def _step_wire(self, step: _Step) -> dict[str, Any]:
        """A compaction step's usage and timings, for its end event."""
        metrics = step.metrics()
        fields: dict[str, Any] = dict(metrics.timing_wire())
        if step.usage is not None:
            fields["usage"] = step.usage.to_wire()
        return fields

    async def _summary_request(
        self, previous: str | None, part: list[Message], max_tokens: int
    ) -> ProviderRequest:
        """The request for a summary of ``part`` (after the ``previous`` summary), no tools,
        at most ``max_tokens`` long. Its input is trimmed from the oldest end until request +
        summary fit the window."""
        budget = self.budget
        body = transcript(part)
        for _ in range(SUMMARY_FIT_ATTEMPTS):
            request = ProviderRequest(
                model=self.config.provider_model,
                messages=summary_messages(previous, body),
                max_tokens=max_tokens,
            )
            if budget.window is None:
                return request
            tokens = await self._count(request)
            room = budget.window - max_tokens
            if tokens <= room:
                return request
            share = max(0.0, room / tokens * 0.9 - 0.05)
            keep = int(len(body) * share)
            body = "[… the oldest part is left out …]\n" + (body[-keep:] if keep else "")
        raise CompactionFailed(
            "what there is to summarize does not fit the model's context window", "too-large"
        )

    async def _count(self, request: ProviderRequest) -> int:
        if self.ports.count_tokens is not None:
            try:
                return await self.ports.count_tokens(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
        return estimate_request_tokens(request.messages, request.tools)

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

    async def _stream(
        self,
        step: _Step,
        request: ProviderRequest,
        on_event: Callable[[_Step, object], Awaitable[None]],
    ) -> None:
        """Stream ``request`` into ``step`` through ``on_event``, retrying as the step allows
        (docs/protocol.md#45-provider-errors-and-retries); a final failure is ``step.error``."""
        ports = self.ports
        ports.observer.step_started(step.id, request)
        try:
            await self._stream_attempts(step, request, on_event)
        finally:
            # Cancelled mid-stream (an abort): it ended at its last token (cut_short).
            step.cut_short(ports.clock())
            reason = "error" if step.error else "aborted" if self.aborted else step.finish_reason
            ports.observer.step_ended(step.metrics(), reason, step.error)

    async def _stream_attempts(
        self,
        step: _Step,
        request: ProviderRequest,
        on_event: Callable[[_Step, object], Awaitable[None]],
    ) -> None:
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
                        await on_event(step, event)
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

    async def _on_summary_event(self, step: _Step, event: object) -> None:
        """A compaction's stream: its text is the summary (not streamed to clients), reasoning
        only counts for timing; it offers no tools."""
        if isinstance(event, TextDelta | ReasoningDelta):
            if event.text and step.first_token is None:
                step.first_token = self.ports.clock()
            if isinstance(event, TextDelta):
                step.summary += event.text
        elif isinstance(event, UsageReport):
            step.usage = event.usage
        elif isinstance(event, Finish):
            step.finish_reason = event.reason
        elif isinstance(event, StatusChange):
            await self._emit("status", status=event.status)

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
