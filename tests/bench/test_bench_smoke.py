"""The benchmark's model stand-in speaks the OpenAI streaming format the official SDK parses."""

from __future__ import annotations

import openai
import pytest

from bench.standin import MODEL, Schedule, StandinProcess, stamps

TOKENS = 12


@pytest.fixture(scope="module")
def standin():
    with StandinProcess(Schedule(rate=2000, tokens=TOKENS, ttft=0)) as process:
        yield process


def test_stream_parses_with_the_openai_sdk(standin):
    client = openai.OpenAI(base_url=standin.url, api_key="bench", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert len(stamps(text)) == TOKENS
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == TOKENS


def test_max_tokens_caps_the_stream_and_models_are_listed(standin):
    client = openai.OpenAI(base_url=standin.url, api_key="bench", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=3
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert len(stamps(text)) == 3
