"""Fixtures of the provider tests."""

from __future__ import annotations

import pytest

from tests.chat.providers.sse_server import ScriptedServer


@pytest.fixture
def server():
    with ScriptedServer() as server:
        yield server


@pytest.fixture
async def closing():
    """``closing(provider)`` returns the provider and closes it after the test."""
    made = []

    def keep(provider):
        made.append(provider)
        return provider

    yield keep
    for provider in made:
        await provider.aclose()
