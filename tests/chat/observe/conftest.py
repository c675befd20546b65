"""Fixtures for in-process telemetry tests: a scripted model, and tracing into the SDK's
in-memory exporter."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import get_channel_layer
from django.core.cache import cache
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chat.config import reset_config
from chat.observe import tracing
from chat.providers import get_catalog, reset_catalog
from chat.tools import reset_tool_registry
from tests.chat.providers.sse_server import ScriptedServer

DEADLINE = 20.0


@pytest.fixture
async def scripted(tmp_path, settings, monkeypatch):
    """The scripted OpenAI-format server, and a config whose only credential points at it."""
    await get_channel_layer().flush()
    cache.clear()  # turn-rate counters
    with ScriptedServer() as server:
        config = tmp_path / "dispatch.toml"
        config.write_text(
            f"""
[runtime]
retry_delays = [0.01]

[tools]
workspace_root = "{tmp_path / "workspace"}"

[[credentials]]
name = "scripted"
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["test-model"]
"""
        )
        monkeypatch.setenv("SCRIPTED_API_KEY", "test-key")
        settings.DISPATCH_CONFIG = str(config)
        reset_config()
        reset_catalog()
        reset_tool_registry()
        yield server
        await get_catalog().aclose()
        reset_config()
        reset_catalog()
        reset_tool_registry()


class Traces:
    """The spans the in-memory exporter received."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name.startswith(prefix)]

    async def wait_for(self, prefix: str, count: int = 1) -> list[ReadableSpan]:
        """The finished spans whose name starts with ``prefix``, once there are ``count``."""
        end = time.monotonic() + DEADLINE
        while len(self.named(prefix)) < count:
            if time.monotonic() > end:
                names = [span.name for span in self.spans()]
                raise AssertionError(f"no {count} finished {prefix!r} span(s) in {names}")
            await asyncio.sleep(0.01)
        return self.named(prefix)


def _tracing(capture_content: bool):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, capture_content=capture_content)
    try:
        yield Traces(exporter)
    finally:
        tracing.install(None)
        provider.shutdown()


@pytest.fixture
def traces():
    """Tracing on, into an in-memory exporter; message contents not recorded."""
    yield from _tracing(capture_content=False)


@pytest.fixture
def traces_with_content():
    """Tracing on, with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT's behaviour."""
    yield from _tracing(capture_content=True)
