"""What every SDK-based provider does with its stream: relay it, classify its failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from chat.runtime.types import ProviderError, ProviderEvent, ReasoningDelta, TextDelta

Client = TypeVar("Client")
LIST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # listing models is quick or broken


@dataclass(frozen=True)
class ListedModel:
    """A model a server lists: its id, and whether it sees images when the listing says."""

    id: str
    vision: bool | None = None
    window: int | None = None  # the context window, when the listing reports it

    @classmethod
    def from_listing(cls, entry: Mapping[str, Any]) -> ListedModel:
        return cls(str(entry["id"]), listing_vision(entry), listed_window(entry))


def listing_vision(entry: Mapping[str, Any]) -> bool | None:
    """Whether a listing entry says its model takes images; None when it does not say.

    Understood: ``capabilities`` as a list (``vision``, ``multimodal``) or an object with a
    ``vision`` flag (Ollama, llama.cpp, vLLM-style servers), ``input_modalities`` alone or in
    ``architecture`` (OpenRouter), and LM Studio's ``type: "vlm"``.
    """
    capabilities = entry.get("capabilities")
    if isinstance(capabilities, list):
        return bool({"vision", "multimodal", "image"} & {str(c).lower() for c in capabilities})
    if isinstance(capabilities, Mapping) and isinstance(capabilities.get("vision"), bool):
        return capabilities["vision"]
    architecture = entry.get("architecture")
    modalities = entry.get("input_modalities")
    if isinstance(architecture, Mapping) and modalities is None:
        modalities = architecture.get("input_modalities")
    if isinstance(modalities, list):
        return "image" in modalities
    if entry.get("type") in ("vlm", "llm"):
        return entry["type"] == "vlm"
    return None


class ClientPerLoop(Generic[Client]):
    """One SDK client per event loop.

    Built from the SDK's client class and its aiohttp backend (the httpx default costs about
    three times the CPU per streamed chunk, docs/benchmarks.md). An aiohttp session belongs to
    the event loop that opened it, and a provider may serve several loops (a test's,
    ``async_to_sync``'s).
    """

    def __init__(
        self,
        sdk_client: Callable[..., Client],
        aiohttp_client: Callable[..., httpx.AsyncClient],
        *,
        timeout: httpx.Timeout,
        **options: Any,
    ) -> None:
        # max_retries=0: the runtime owns the retry policy and must see every failure.
        self._make = lambda: sdk_client(
            **options, max_retries=0, timeout=timeout, http_client=aiohttp_client(timeout=timeout)
        )
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make()
        return client

    async def list_models(
        self, *, classify: Callable[[Exception], ProviderError]
    ) -> list[ListedModel]:
        """The models the server offers, in its order. Raises ``classify(exc)``."""
        client: Any = self.get()
        try:
            page = await client.models.list(timeout=LIST_TIMEOUT)
            return [ListedModel.from_listing(model.model_dump()) async for model in page]
        except Exception as exc:
            raise classify(exc) from exc

    async def aclose(self) -> None:
        """Close the running loop's client (its connections)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()  # type: ignore[attr-defined]


# Where OpenAI-compatible servers put a model's window in their /models listing: OpenRouter
# and others `context_length`, vLLM `max_model_len`, some `context_window`, LM Studio
# `max_context_length`.
WINDOW_FIELDS = ("context_length", "max_model_len", "context_window", "max_context_length")


def listed_window(entry: Mapping[str, Any]) -> int | None:
    """The context window a listing entry reports, if it does (a positive integer)."""
    for field in WINDOW_FIELDS:
        value = entry.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


async def relay(
    batches: Callable[[], AsyncGenerator[list[Any], None]],
    feed: Callable[[Any], Iterable[ProviderEvent]],
    *,
    sdk_errors: tuple[type[Exception], ...],
    classify: Callable[[Exception], ProviderError],
) -> AsyncIterator[ProviderEvent]:
    """Yield the events ``feed`` makes of each stream item; close the stream however it ends.

    Items come in batches (what one network read brought); the deltas of a batch are
    coalesced, so a server that falls behind catches up with fewer, larger deltas instead of
    a growing backlog. SDK and transport failures become ``classify(exc)``; an item that is
    not valid JSON ends the step with a non-retryable ``malformed-stream`` error.
    """
    caught: tuple[type[Exception], ...] = (*sdk_errors, httpx.HTTPError)
    try:
        async with contextlib.aclosing(batches()) as stream:
            async for batch in stream:
                events: list[ProviderEvent] = []
                try:
                    for item in batch:
                        events.extend(feed(item))
                except Exception:
                    for event in coalesce(events):  # what came before a bad item counts
                        yield event
                    raise
                for event in coalesce(events):
                    yield event
    except caught as exc:
        raise classify(exc) from exc
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"malformed stream line from the provider: {exc}", code="malformed-stream"
        ) from exc


def coalesce(events: list[ProviderEvent]) -> list[ProviderEvent]:
    """Merge adjacent text deltas, and adjacent reasoning deltas, into one each (their token
    counts add up: a stopped step's output is estimated from them)."""
    merged: list[ProviderEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if type(event) is type(last) and isinstance(event, TextDelta | ReasoningDelta):
            merged[-1] = type(event)(last.text + event.text, last.tokens + event.tokens)  # type: ignore[union-attr]
        else:
            merged.append(event)
    return merged


class SSEData:
    """The ``data:`` payloads of a server-sent-events byte stream, fed as the bytes arrive."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads of the lines ``data`` completes (event names and comments skipped)."""
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        return [line[5:].strip() for line in lines if line.startswith(b"data:")]

    def end(self) -> list[bytes]:
        """The payload of a last line the stream did not end with a newline."""
        rest, self._rest = self._rest, b""
        return [rest[5:].strip()] if rest.startswith(b"data:") else []


def transport_failure(
    exc: BaseException,
    *,
    timeouts: tuple[type[Exception], ...],
    connections: tuple[type[Exception], ...],
) -> ProviderError | None:
    """A timeout or a failed connection (both retryable); None for any other failure.

    The SDKs' aiohttp backend (httpx-aiohttp) reports every aiohttp connection error, a
    refused connection included, as ``httpx.ConnectTimeout``; the ``OSError`` at the root of
    the cause chain tells a refused or reset connection from a real timeout.
    """
    if _os_error_in(exc) or (
        isinstance(exc, (*connections, httpx.TransportError))
        and not isinstance(exc, (*timeouts, httpx.TimeoutException))
    ):
        return ProviderError(
            f"connection to the provider failed: {exc}", code="connection", retryable=True
        )
    if isinstance(exc, (*timeouts, httpx.TimeoutException)):
        return ProviderError(f"the provider timed out: {exc}", code="timeout", retryable=True)
    return None


def _os_error_in(exc: BaseException) -> bool:
    """Whether a non-timeout OSError caused ``exc`` (directly or further down the chain)."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, OSError) and not isinstance(link, TimeoutError):
            return True
        link = link.__cause__ or link.__context__
    return False
