"""The OpenAI-compatible provider (OpenAI, llama.cpp server, vLLM, Ollama …) on the official SDK.

Streams chat completions and turns them into the runtime's provider events. The SDK's own
retries are off: the runtime owns the retry policy and needs to see every failure.

The SDK sends the request and raises its errors; the stream's lines are read raw and parsed
with ``orjson.loads`` (its JSONDecodeError is json's). Building the SDK's pydantic models for
every chunk was a third of a worker's CPU under load (bench/RESULTS.md), and the stream's JSON
is all the adapter needs.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson

from chat.providers.sampling import DEFAULT_SAMPLING, Sampling
from chat.providers.streaming import ClientPerLoop, ListedModel, SSEData, relay, transport_failure
from chat.runtime.attachments import ImagePart, Part, joined_text, user_parts
from chat.runtime.types import (
    Finish,
    Message,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    Usage,
    UsageReport,
)

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}
# Generous read timeout: a busy local server may sit silent for a long time before streaming.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


class OpenAIProvider:
    """A Provider for one OpenAI-compatible endpoint (one credential)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        send_reasoning_effort: bool = False,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        sampling: Sampling = DEFAULT_SAMPLING,
    ):
        self._clients = ClientPerLoop(
            openai.AsyncOpenAI, openai.DefaultAioHttpClient,
            base_url=base_url, api_key=api_key, timeout=timeout,
        )  # fmt: skip
        self._send_reasoning_effort = send_reasoning_effort
        self._sampling = sampling

    @property
    def sampling(self) -> Sampling:
        """The sampling settings every request of this provider is sent with."""
        return self._sampling

    async def aclose(self) -> None:
        """Close this event loop's connections to the server."""
        await self._clients.aclose()

    async def list_models(self) -> list[ListedModel]:
        """The models the server offers, in its order. Raises ProviderError."""
        return await self._clients.list_models(classify=provider_error)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Stream one step (see the Provider protocol). Raises ProviderError."""
        params: dict[str, Any] = {
            "model": request.model,
            "messages": to_openai_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            params["tools"] = to_openai_tools(request.tools)
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if self._send_reasoning_effort and request.reasoning_effort:
            params["reasoning_effort"] = request.reasoning_effort
        params.update(sampling_params(self._sampling))
        step = _StepState()
        events = relay(
            lambda: self._chunks(params),
            step.feed,
            sdk_errors=(openai.APIError,),
            classify=provider_error,
        )
        async for event in events:
            yield event
        for event in step.finish():
            yield event

    async def _chunks(self, params: dict[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The stream's chunks as parsed JSON, a batch per network read, until ``[DONE]``."""
        # The SDK's generic ``post`` (its way to any endpoint, with the client's options,
        # headers and errors) sends the body as it is: ``chat.completions.create`` first
        # transforms its typed params, walking every message and tool (0.67 ms of CPU per
        # call with five tools, docs/benchmarks.md) and the forty-odd params it takes, and
        # changes nothing in dicts already in the wire format. ``cast_to=httpx.Response``
        # with ``stream=True``: the response unread, for the raw lines.
        response = await self._clients.get().post(
            "/chat/completions", body=params, cast_to=httpx.Response, stream=True
        )
        async with contextlib.aclosing(response):
            sse = SSEData()
            async for data in response.aiter_bytes():
                batch: list[dict[str, Any]] = []
                try:
                    done = _parse(sse.feed(data), batch)
                except Exception:
                    yield batch  # the chunks before the bad one count
                    raise
                yield batch
                if done:
                    return
            batch = []
            _parse(sse.end(), batch)
            yield batch


def _parse(payloads: list[bytes], chunks: list[dict[str, Any]]) -> bool:
    """Append the chunks of ``data:`` payloads up to ``[DONE]``; whether it came.

    Raises at a payload that is not a JSON object, or is an error object.
    """
    for data in payloads:
        if data == b"[DONE]":
            return True
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            raise json.JSONDecodeError("a chunk is not a JSON object", data.decode(), 0)
        if "error" in chunk:  # an error object inside a 200 stream
            raise stream_error(chunk["error"])
        chunks.append(chunk)
    return False


# ---------------------------------------------------------------- requests


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Runtime messages → chat-completions messages. Thinking is never sent back.

    A user message with an image becomes a list of content parts (text and ``image_url``
    parts with a ``data:`` URL); every other user message stays one string.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            # One "tool" message per result: that is how the API pairs them with calls.
            out.extend(
                {
                    "role": "tool",
                    "tool_call_id": chunk["toolCallId"],
                    "content": chunk["content"],
                }
                for chunk in message.chunks
                if chunk["type"] == "tool-result"
            )
            continue
        if message.role == "user":
            out.append({"role": "user", "content": _user_content(user_parts(message.chunks))})
            continue
        text = "".join(c["text"] for c in message.chunks if c["type"] in ("text", "system"))
        if message.role != "assistant":
            out.append({"role": message.role, "content": text})
            continue
        calls = [
            {
                "id": c["toolCallId"],
                "type": "function",
                "function": {"name": c["toolName"], "arguments": json.dumps(c["input"])},
            }
            for c in message.chunks
            if c["type"] == "tool-call"
        ]
        if not text and not calls:
            continue  # a thinking-only message has nothing to send
        assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            assistant["tool_calls"] = calls
        out.append(assistant)
    return out


def sampling_params(sampling: Sampling) -> dict[str, Any]:
    """The request's sampling fields, in the body as they are: ``top_k`` and ``min_p`` are not
    in the chat-completions API, but OpenAI-compatible servers (vLLM, llama.cpp) take them, and
    the whole body goes to the SDK as ``extra_body`` (``_chunks``)."""
    given = sampling.given()
    given.pop("repeat_penalty", None)  # the config allows it only for local models
    return given


def _user_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    if not any(isinstance(part, ImagePart) for part in parts):
        return joined_text(parts)
    return [
        {"type": "image_url", "image_url": {"url": part.data_url}}
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part}
        for part in parts
    ]


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs → chat-completions function tools."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]


# ---------------------------------------------------------------- the stream


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class _StepState:
    """Accumulates one streamed completion: tool-call fragments, usage, timings, finish."""

    def __init__(self) -> None:
        self.calls: dict[int, _PendingCall] = {}
        self.usage: Usage | None = None
        self.timings: Mapping[str, Any] | None = None
        self.finish_reason: str | None = None

    def feed(self, chunk: dict[str, Any]) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            self.timings = timings  # llama.cpp reports its own timings
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            for field in ("reasoning_content", "reasoning"):
                reasoning = delta.get(field)
                if isinstance(reasoning, str) and reasoning:
                    events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
            for fragment in delta.get("tool_calls") or ():
                self._add_fragment(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        call = self.calls.setdefault(fragment.get("index") or 0, _PendingCall())
        if fragment.get("id"):
            call.id = fragment["id"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call.name += function["name"]
        if function.get("arguments"):
            call.arguments += function["arguments"]

    def finish(self) -> list[ProviderEvent]:
        """The events due at stream end: complete tool calls, then usage, then Finish."""
        if self.finish_reason is None:
            # The body ended without a finish reason: the connection was cut.
            raise ProviderError(
                "the provider's stream ended before the response was complete",
                code="connection",
                retryable=True,
            )
        events: list[ProviderEvent] = []
        for index in sorted(self.calls):
            call = self.calls[index]
            # Some compatible servers omit the id; the runtime needs one to pair the result.
            call_id = call.id or f"call_{uuid.uuid4().hex[:12]}"
            events.append(ToolCallReady(call_id, call.name, _parse_arguments(call)))
        if self.usage is not None:
            events.append(UsageReport(self.usage, self.timings))
        events.append(Finish(FINISH_REASONS.get(self.finish_reason, self.finish_reason)))
        return events


def _parse_arguments(call: _PendingCall) -> dict[str, Any]:
    if not call.arguments.strip():
        return {}  # a call without arguments
    try:
        value = json.loads(call.arguments)
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"tool call {call.name!r} has unparseable arguments: {exc}", code="bad-tool-call"
        ) from exc
    if not isinstance(value, dict):
        raise ProviderError(
            f"tool call {call.name!r} arguments are not a JSON object", code="bad-tool-call"
        )
    return value


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    # OpenAI's prompt_tokens already include the cached tokens (the protocol's inputTokens).
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cache_read_tokens=details.get("cached_tokens"),
    )


# ---------------------------------------------------------------- errors


def provider_error(exc: Exception) -> ProviderError:
    """Classify an SDK/transport failure: connection, timeout, 429 and 5xx are retryable."""
    failure = transport_failure(
        exc, timeouts=(openai.APITimeoutError,), connections=(openai.APIConnectionError,)
    )
    if failure is not None:
        return failure
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status == 429 or status >= 500
        return ProviderError(
            f"HTTP {status}: {_detail(exc.body, exc.message)}",
            code=f"http-{status}",
            retryable=retryable,
        )
    if isinstance(exc, openai.APIError):
        return stream_error(exc.body if isinstance(exc.body, dict) else {"message": exc.message})
    return ProviderError(f"provider failed: {exc}")


def stream_error(body: Any) -> ProviderError:
    """An ``error`` object inside a 200 stream; server errors and rate limits are retryable."""
    body = body if isinstance(body, dict) else {"message": str(body)}
    kind = str(body.get("type") or body.get("code") or "")
    retryable = any(word in kind for word in ("server_error", "rate_limit", "overloaded"))
    message = body.get("message") if isinstance(body.get("message"), str) else "provider error"
    return ProviderError(message, code=kind or None, retryable=retryable)


def _detail(body: object, fallback: str) -> str:
    """The human part of an error body: ``{"error": {"message": …}}`` or ``{"message": …}``."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return fallback
