"""Helpers shared by the provider tests: run a provider's stream to its end."""

from __future__ import annotations

from chat.runtime.types import Provider, ProviderError, ProviderEvent, ProviderRequest


async def run_stream(
    provider: Provider, request: ProviderRequest
) -> tuple[list[ProviderEvent], ProviderError | None]:
    """All events the stream yielded, and the ProviderError that ended it (or None)."""
    events: list[ProviderEvent] = []
    try:
        async for event in provider.stream(request):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None
