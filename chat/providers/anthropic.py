"""The Anthropic provider (Messages API) on the official SDK.

Thinking round trip: the API wants the signed thinking blocks of the assistant messages of a
tool loop in progress sent back verbatim, but the runtime keeps thinking as text only. So the
provider remembers the signed blocks of each response that called tools, keyed by its tool-call
ids (in memory, bounded). When a tool loop has a message whose blocks are unknown (another
process produced it, or the server restarted), thinking is left off for that request, because
the API rejects such a loop with thinking on.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import anthropic
import httpx

from chat.providers.sampling import DEFAULT_SAMPLING, Sampling
from chat.providers.streaming import ClientPerLoop, ListedModel, relay, transport_failure
from chat.runtime.attachments import ATTACHMENT_TYPES, attachment_text, image_part
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

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool-calls",
    "refusal": "content-filter",
}
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 8192, "xhigh": 16384, "max": 32000}
# The Messages API requires max_tokens; this is the answer's allowance when none is configured.
DEFAULT_MAX_TOKENS = 8192
RETRYABLE_ERROR_TYPES = {"overloaded_error", "api_error", "rate_limit_error"}
THINKING_CACHE_SIZE = 1024
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")


class AnthropicProvider:
    """A Provider for one Anthropic credential."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        thinking: bool = False,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        sampling: Sampling = DEFAULT_SAMPLING,
    ):
        self._clients = ClientPerLoop(
            anthropic.AsyncAnthropic, anthropic.DefaultAioHttpClient,
            base_url=base_url, api_key=api_key, timeout=timeout,
        )  # fmt: skip
        self._thinking = thinking
        self._sampling = sampling
        # tool-call id → the signed thinking blocks of the response that made the call.
        self._thinking_blocks: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

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
        system, messages, complete = self._to_anthropic_messages(request.messages)
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        params: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
        budget = THINKING_BUDGETS.get(request.reasoning_effort or "")
        if self._thinking and budget is not None and complete:
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
            max_tokens += budget  # the budget counts against max_tokens
        else:
            messages[:] = [_without_thinking(m) for m in messages]
            # With thinking on the API refuses a temperature other than 1 and top_k.
            params.update(
                {k: v for k, v in self._sampling.given().items() if k in ANTHROPIC_SAMPLING}
            )
        params["max_tokens"] = max_tokens
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = to_anthropic_tools(request.tools)
        step = _StepState()

        async def batches() -> AsyncGenerator[list[Any], None]:
            stream = await self._clients.get().messages.create(**params)
            try:
                async for item in stream:
                    yield [item]
            finally:
                await stream.close()

        events = relay(
            batches,
            step.feed,
            sdk_errors=(anthropic.APIError,),
            classify=provider_error,
        )
        async for event in events:
            yield event
        if step.stop_reason is None:
            raise ProviderError(
                "the provider's stream ended before the response was complete",
                code="connection",
                retryable=True,
            )
        self._remember_thinking(step)
        yield UsageReport(step.usage())
        yield Finish(STOP_REASONS.get(step.stop_reason, step.stop_reason))

    def _remember_thinking(self, step: _StepState) -> None:
        if not step.thinking_blocks:
            return
        for call_id in step.call_ids:
            self._thinking_blocks[call_id] = step.thinking_blocks
        while len(self._thinking_blocks) > THINKING_CACHE_SIZE:
            self._thinking_blocks.popitem(last=False)

    def _to_anthropic_messages(
        self, messages: Sequence[Message]
    ) -> tuple[str, list[dict[str, Any]], bool]:
        """(system, messages, whether every tool-calling message of the open loop is signed)."""
        system = "\n\n".join(
            c["text"] for m in messages if m.role == "system" for c in m.chunks if "text" in c
        )
        out: list[dict[str, Any]] = []
        for message in messages:
            if message.role == "system":
                continue
            blocks = self._blocks(message)
            if not blocks:
                continue
            role = "assistant" if message.role == "assistant" else "user"
            if out and out[-1]["role"] == role:
                out[-1]["content"].extend(blocks)  # the API wants roles to alternate
            else:
                out.append({"role": role, "content": blocks})
        return system, out, _open_loop_is_signed(out)

    def _blocks(self, message: Message) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for chunk in message.chunks:
            kind = chunk["type"]
            if kind == "text" and chunk["text"]:
                blocks.append({"type": "text", "text": chunk["text"]})
            elif kind in ATTACHMENT_TYPES:
                image = image_part(chunk)
                if image is None:
                    blocks.append({"type": "text", "text": attachment_text(chunk)})
                else:
                    source = {"type": "base64", "media_type": image.media_type, "data": image.data}
                    blocks.append({"type": "image", "source": source})
            elif kind == "tool-call":
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": chunk["toolCallId"],
                        "name": chunk["toolName"],
                        "input": chunk["input"],
                    }
                )
            elif kind == "tool-result":
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": chunk["toolCallId"],
                        "content": chunk["content"],
                        "is_error": bool(chunk["isError"]),
                    }
                )
        calls = [b["id"] for b in blocks if b["type"] == "tool_use"]
        if calls and calls[0] in self._thinking_blocks:
            blocks = [*self._thinking_blocks[calls[0]], *blocks]
        return blocks


def _open_loop_is_signed(messages: list[dict[str, Any]]) -> bool:
    """True when each tool-calling assistant message since the last user prompt has thinking."""
    for message in reversed(messages):
        content = message["content"]
        if message["role"] == "user":
            if not any(b["type"] == "tool_result" for b in content):
                return True  # a real user prompt: the loop starts after it
            continue
        calls = any(b["type"] == "tool_use" for b in content)
        if calls and content[0]["type"] not in ("thinking", "redacted_thinking"):
            return False
    return True


def _without_thinking(message: dict[str, Any]) -> dict[str, Any]:
    content = [b for b in message["content"] if b["type"] not in ("thinking", "redacted_thinking")]
    return {**message, "content": content}


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs → Messages API tools."""
    return [
        {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
        for t in tools
    ]


class _StepState:
    """Accumulates one streamed message: content blocks by index, usage and the stop reason."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.thinking_blocks: list[dict[str, Any]] = []
        self.call_ids: list[str] = []
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.stop_reason: str | None = None

    def feed(self, event: Any) -> list[ProviderEvent]:
        kind = event.type
        if kind == "message_start":
            self._count(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block.model_dump(exclude_none=True)
            block.pop("citations", None)
            if block["type"] == "tool_use":
                block["partial_json"] = ""
            self.blocks[event.index] = block
        elif kind == "content_block_delta":
            return self._delta(self.blocks.setdefault(event.index, {"type": "text"}), event.delta)
        elif kind == "content_block_stop":
            return self._stop(self.blocks.get(event.index, {}))
        elif kind == "message_delta":
            self._count(event.usage)
            if event.delta.stop_reason:
                self.stop_reason = event.delta.stop_reason
        return []

    def _delta(self, block: dict[str, Any], delta: Any) -> list[ProviderEvent]:
        if delta.type == "text_delta":
            return [TextDelta(delta.text)]
        if delta.type == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
            return [ReasoningDelta(delta.thinking)]
        if delta.type == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.signature
        elif delta.type == "input_json_delta":
            block["partial_json"] = block.get("partial_json", "") + delta.partial_json
        return []

    def _stop(self, block: dict[str, Any]) -> list[ProviderEvent]:
        kind = block.get("type")
        if kind in ("thinking", "redacted_thinking"):
            self.thinking_blocks.append(block)
        elif kind == "tool_use":
            self.call_ids.append(block["id"])
            return [ToolCallReady(block["id"], block["name"], _parse_input(block))]
        return []

    def _count(self, usage: Any) -> None:
        # message_start carries the prompt side; message_delta the cumulative totals.
        if usage is None:
            return
        if usage.input_tokens is not None:
            self.input_tokens = usage.input_tokens
        if usage.output_tokens is not None:
            self.output_tokens = usage.output_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write = usage.cache_creation_input_tokens

    def usage(self) -> Usage:
        """Normalized: input_tokens is the whole prompt, cached parts included."""
        return Usage(
            input_tokens=self.input_tokens + (self.cache_read or 0) + (self.cache_write or 0),
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


def _parse_input(block: dict[str, Any]) -> dict[str, Any]:
    text = block.get("partial_json", "")
    if not text.strip():
        return dict(block.get("input") or {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"tool call {block['name']!r} has unparseable input: {exc}", code="bad-tool-call"
        ) from exc
    if not isinstance(value, dict):
        raise ProviderError(
            f"tool call {block['name']!r} input is not a JSON object", code="bad-tool-call"
        )
    return value


def provider_error(exc: Exception) -> ProviderError:
    """Classify an SDK/transport failure: connection, timeout, 429, 5xx and 529 are retryable."""
    failure = transport_failure(
        exc, timeouts=(anthropic.APITimeoutError,), connections=(anthropic.APIConnectionError,)
    )
    if failure is not None:
        return failure
    if isinstance(exc, anthropic.APIStatusError):
        error = _error_object(exc.body)
        kind = str(error.get("type") or "")
        message = error.get("message") if isinstance(error.get("message"), str) else exc.message
        status = exc.status_code
        if status == 200:  # an `error` event inside the stream
            return ProviderError(
                f"{kind or 'error'}: {message}",
                code=kind or None,
                retryable=kind in RETRYABLE_ERROR_TYPES,
            )
        return ProviderError(
            f"HTTP {status}: {message}",
            code=f"http-{status}",
            retryable=status == 429 or status >= 500,
        )
    return ProviderError(f"provider failed: {exc}")


def _error_object(body: object) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` → the inner object."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}
