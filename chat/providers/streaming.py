"""What every SDK-based provider does with its stream: relay it, classify its failures."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

import httpx

from chat.runtime.types import ProviderError, ProviderEvent


async def relay(
    items: Callable[[], AsyncGenerator[Any, None]],
    feed: Callable[[Any], Iterable[ProviderEvent]],
    *,
    sdk_errors: tuple[type[Exception], ...],
    classify: Callable[[Exception], ProviderError],
) -> AsyncIterator[ProviderEvent]:
    """Yield the events ``feed`` makes of each stream item; close the stream however it ends.

    SDK and transport failures become ``classify(exc)``; an item that is not valid JSON ends
    the step with a non-retryable ``malformed-stream`` error.
    """
    caught: tuple[type[Exception], ...] = (*sdk_errors, httpx.HTTPError)
    try:
        async with contextlib.aclosing(items()) as stream:
            async for item in stream:
                for event in feed(item):
                    yield event
    except caught as exc:
        raise classify(exc) from exc
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"malformed stream line from the provider: {exc}", code="malformed-stream"
        ) from exc
