"""The OpenAI-compatible provider against a real scripted HTTP/SSE server."""

from __future__ import annotations

import socket

import pytest

from chat.providers.openai import OpenAIProvider
from chat.providers.sampling import Sampling
from chat.providers.streaming import ListedModel, coalesce
from chat.runtime.types import (
    Finish,
    Message,
    ProviderRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    Usage,
    UsageReport,
)
from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Reply,
    openai_chunk,
    openai_models_reply,
    openai_text_reply,
    openai_usage,
)
from tests.chat.providers.streams import run_stream

COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
def make_provider(closing):
    """``make_provider(server, **options)``, closed after the test."""
    return lambda server, **options: closing(
        OpenAIProvider(base_url=server.url + "/v1", api_key="test-key", **options)
    )


def ask(text: str = "hi", **fields) -> ProviderRequest:
    return ProviderRequest(
        model="test-model", messages=[Message("user", [{"type": "text", "text": text}])], **fields
    )


async def test_plain_text_streams_deltas_then_usage_then_finish(server, make_provider):
    server.script(COMPLETIONS, openai_text_reply("Hello", prompt_tokens=12, completion_tokens=3))

    events, error = await run_stream(make_provider(server), ask("hi", max_tokens=50))

    assert error is None
    # Deltas that arrive in one network read come as one (see test_streaming.py).
    assert coalesce(events) == [
        TextDelta("Hello", 2),
        UsageReport(Usage(12, 3)),
        Finish("stop"),
    ]
    body = server.requests[0].body
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 50
    assert "tools" not in body and "reasoning_effort" not in body
    assert server.requests[0].headers["Authorization"] == "Bearer test-key"


async def test_reasoning_content_and_reasoning_become_reasoning_deltas(server, make_provider):
    server.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"role": "assistant", "reasoning_content": "think "}),
                openai_chunk({"reasoning": "more"}),
                openai_chunk({"content": "answer"}),
                openai_chunk({}, "stop"),
                OPENAI_DONE,
            ]
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    assert coalesce(events) == [
        ReasoningDelta("think more", 2),
        TextDelta("answer"),
        Finish("stop"),
    ]


def call_fragment(index: int, *, id: str | None = None, name: str | None = None, args: str = ""):
    function = {"arguments": args}
    if name is not None:
        function["name"] = name
    fragment = {"index": index, "function": function}
    if id is not None:
        fragment |= {"id": id, "type": "function"}
    return fragment


async def test_tool_call_arguments_split_across_chunks_are_assembled(server, make_provider):
    server.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"role": "assistant", "content": "Let me look."}),
                openai_chunk({"tool_calls": [call_fragment(0, id="call_1", name="read_file")]}),
                openai_chunk({"tool_calls": [call_fragment(0, args='{"pa')]}),
                openai_chunk({"tool_calls": [call_fragment(0, args='th": "a.txt", ')]}),
                openai_chunk({"tool_calls": [call_fragment(0, args='"limit": 3}')]}),
                openai_chunk({}, "tool_calls"),
                openai_chunk(usage=openai_usage(20, 8)),
                OPENAI_DONE,
            ]
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    assert events == [
        TextDelta("Let me look."),
        ToolCallReady("call_1", "read_file", {"path": "a.txt", "limit": 3}),
        UsageReport(Usage(20, 8)),
        Finish("tool-calls"),
    ]


async def test_two_parallel_tool_calls_are_assembled_by_index(server, make_provider):
    server.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"tool_calls": [call_fragment(0, id="c0", name="list_files")]}),
                openai_chunk({"tool_calls": [call_fragment(1, id="c1", name="read_file")]}),
                openai_chunk({"tool_calls": [call_fragment(1, args='{"path": "b"}')]}),
                openai_chunk({"tool_calls": [call_fragment(0, args='{"path": ".')]}),
                openai_chunk({"tool_calls": [call_fragment(0, args='"}')]}),
                openai_chunk({}, "tool_calls"),
                OPENAI_DONE,
            ]
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    assert events == [
        ToolCallReady("c0", "list_files", {"path": "."}),
        ToolCallReady("c1", "read_file", {"path": "b"}),
        Finish("tool-calls"),
    ]


async def test_usage_only_final_chunk_reports_cached_tokens_and_llama_timings(
    server, make_provider
):
    timings = {"prompt_n": 100, "predicted_n": 20, "predicted_ms": 400.0}
    server.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"content": "ok"}),
                openai_chunk({}, "length"),
                openai_chunk(usage=openai_usage(100, 20, cached=80), timings=timings),
                OPENAI_DONE,
            ]
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    assert events == [
        TextDelta("ok"),
        UsageReport(Usage(100, 20, cache_read_tokens=80), timings),
        Finish("length"),
    ]


async def test_content_filter_finish_reason_is_mapped(server, make_provider):
    server.script(COMPLETIONS, Reply(events=[openai_chunk({}, "content_filter"), OPENAI_DONE]))

    events, error = await run_stream(make_provider(server), ask())

    assert (events, error) == ([Finish("content-filter")], None)


async def test_429_is_retryable_and_the_sdk_does_not_retry_itself(server, make_provider):
    rate_limited = {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}
    server.script(COMPLETIONS, Reply(status=429, body=rate_limited), openai_text_reply("ok"))
    provider = make_provider(server)

    events, error = await run_stream(provider, ask())

    assert events == []
    assert error is not None and error.retryable
    assert error.code == "http-429"
    assert "slow down" in error.message
    assert len(server.requests) == 1  # max_retries=0: the runtime owns retries

    events, error = await run_stream(provider, ask())
    assert error is None and events[-1] == Finish("stop")


async def test_500_is_retryable(server, make_provider):
    server.script(COMPLETIONS, Reply(status=500, body={"error": {"message": "boom"}}))

    _, error = await run_stream(make_provider(server), ask())

    assert error is not None and error.retryable and error.code == "http-500"


async def test_400_is_not_retryable(server, make_provider):
    server.script(COMPLETIONS, Reply(status=400, body={"error": {"message": "model not found: x"}}))

    _, error = await run_stream(make_provider(server), ask())

    assert error is not None and not error.retryable
    assert error.message == "HTTP 400: model not found: x"


async def test_connection_cut_mid_stream_is_retryable_after_partial_content(server, make_provider):
    server.script(COMPLETIONS, Reply(events=[openai_chunk({"content": "partial"})], cut=True))

    events, error = await run_stream(make_provider(server), ask())

    assert events == [TextDelta("partial")]
    assert error is not None and error.retryable and error.code == "connection"


async def test_stream_ending_without_finish_reason_is_a_cut_connection(server, make_provider):
    server.script(COMPLETIONS, Reply(events=[openai_chunk({"content": "partial"})]))

    events, error = await run_stream(make_provider(server), ask())

    assert events == [TextDelta("partial")]
    assert error is not None and error.retryable


async def test_unreachable_server_is_retryable():
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="k")

    _, error = await run_stream(provider, ask())
    await provider.aclose()

    assert error is not None and error.retryable and error.code == "connection"


async def test_malformed_stream_line_ends_the_step_not_retryable(server, make_provider):
    server.script(
        COMPLETIONS,
        Reply(events=[openai_chunk({"content": "a"}), "{not json", openai_chunk({}, "stop")]),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert events == [TextDelta("a")]
    assert error is not None and not error.retryable and error.code == "malformed-stream"


async def test_unparseable_tool_call_arguments_end_the_step_not_retryable(server, make_provider):
    server.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"tool_calls": [call_fragment(0, id="c", name="t", args='{"a": ')]}),
                openai_chunk({}, "tool_calls"),
                OPENAI_DONE,
            ]
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert events == []
    assert error is not None and not error.retryable and error.code == "bad-tool-call"


async def test_error_object_inside_the_stream_is_a_provider_error(server, make_provider):
    server.script(
        COMPLETIONS,
        Reply(events=[{"error": {"message": "context too long", "type": "invalid_request"}}]),
    )

    _, error = await run_stream(make_provider(server), ask())

    assert error is not None and not error.retryable
    assert error.message == "context too long"


async def test_history_and_tools_are_converted_to_the_openai_format(server, make_provider):
    server.script(COMPLETIONS, openai_text_reply("done"))
    history = [
        Message("system", [{"type": "system", "text": "Be brief."}]),
        Message("user", [{"type": "text", "text": "list and read"}]),
        Message(
            "assistant",
            [
                {"type": "thinking", "text": "I should look"},
                {"type": "text", "text": "Looking."},
                {"type": "tool-call", "toolCallId": "c0", "toolName": "ls", "input": {}},
                {"type": "tool-call", "toolCallId": "c1", "toolName": "cat", "input": {"p": 1}},
            ],
        ),
        Message(
            "tool",
            [
                {
                    "type": "tool-result",
                    "toolCallId": "c0",
                    "toolName": "ls",
                    "content": "a",
                    "isError": False,
                },
                {
                    "type": "tool-result",
                    "toolCallId": "c1",
                    "toolName": "cat",
                    "content": "nope",
                    "isError": True,
                },
            ],
        ),
        Message("assistant", [{"type": "thinking", "text": "only thoughts"}]),
    ]
    tool = ToolSpec("ls", "List files", {"type": "object", "properties": {}})
    request = ProviderRequest(model="m", messages=history, tools=[tool], reasoning_effort="high")

    _, error = await run_stream(make_provider(server), request)

    assert error is None
    body = server.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "list and read"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "cat", "arguments": '{"p": 1}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "a"},
        {"role": "tool", "tool_call_id": "c1", "content": "nope"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "ls",
                "description": "List files",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    assert "reasoning_effort" not in body  # the credential does not ask for it


async def test_reasoning_effort_is_sent_when_the_credential_enables_it(server, make_provider):
    server.script(COMPLETIONS, openai_text_reply("ok"))

    await run_stream(make_provider(server, send_reasoning_effort=True), ask(reasoning_effort="low"))

    assert server.requests[0].body["reasoning_effort"] == "low"


async def test_list_models(server, make_provider):
    server.script(
        "/v1/models",
        Reply(
            body={
                "object": "list",
                "data": [
                    {"id": "qwen3-8b", "object": "model", "created": 0, "owned_by": "me"},
                    {"id": "org/gemma", "object": "model", "created": 0, "owned_by": "me"},
                    # What servers say about images, when they do:
                    {"id": "llava", "object": "model", "capabilities": ["completion", "vision"]},
                    {"id": "qwen3", "object": "model", "capabilities": ["completion"]},
                    {
                        "id": "or/m",
                        "object": "model",
                        "architecture": {"input_modalities": ["text", "image"]},
                    },
                    {"id": "lm-vlm", "object": "model", "type": "vlm"},
                    {"id": "lm-llm", "object": "model", "type": "llm"},
                ],
            }
        ),
    )

    assert await make_provider(server).list_models() == [
        ListedModel("qwen3-8b"),
        ListedModel("org/gemma"),
        ListedModel("llava", vision=True),
        ListedModel("qwen3", vision=False),
        ListedModel("or/m", vision=True),
        ListedModel("lm-vlm", vision=True),
        ListedModel("lm-llm", vision=False),
    ]


async def test_a_tool_call_without_an_id_gets_one(server, make_provider):
    fragment = {"index": 0, "function": {"name": "ls", "arguments": "{}"}}
    server.script(
        COMPLETIONS,
        Reply(events=[openai_chunk({"tool_calls": [fragment]}), openai_chunk({}, "tool_calls")]),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    call = events[0]
    assert isinstance(call, ToolCallReady)
    assert call.tool_call_id.startswith("call_") and len(call.tool_call_id) > len("call_")
    assert (call.tool_name, call.input) == ("ls", {})


async def test_sampling_settings_are_sent_with_extras_in_the_body(server, make_provider):
    server.script(COMPLETIONS, openai_text_reply("ok"))
    sampling = Sampling(
        temperature=0.3, top_p=0.9, top_k=40, min_p=0.05, presence_penalty=0.5,
        frequency_penalty=-0.2, seed=7,
    )  # fmt: skip

    await run_stream(make_provider(server, sampling=sampling), ask(max_tokens=77))

    body = server.requests[0].body
    assert {k: body[k] for k in ("temperature", "top_p", "presence_penalty")} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "presence_penalty": 0.5,
    }
    assert (body["frequency_penalty"], body["seed"], body["max_tokens"]) == (-0.2, 7, 77)
    # Not in the chat-completions API, taken by vLLM and llama.cpp: extra fields of the body.
    assert (body["top_k"], body["min_p"]) == (40, 0.05)


async def test_without_sampling_settings_the_server_chooses(server, make_provider):
    server.script(COMPLETIONS, openai_text_reply("ok"))
    await run_stream(make_provider(server), ask())
    assert not {"temperature", "top_p", "top_k", "seed", "max_tokens"} & set(
        server.requests[0].body
    )


async def test_a_listing_reports_context_windows(server, make_provider):
    server.script(
        "/v1/models",
        openai_models_reply(
            "a", "b", "c", "d",
            windows={"a": {"context_length": 8192}, "b": {"max_model_len": 32768},
                     "c": {"context_length": "big"}},
        ),
    )  # fmt: skip
    provider = make_provider(server)

    assert [(m.id, m.window) for m in await provider.list_models()] == [
        ("a", 8192),
        ("b", 32768),
        ("c", None),  # "big" is no window
        ("d", None),
    ]


# ---------------------------------------------------------------- attachments

PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
IMAGE = {
    "type": "image",
    "attachmentId": "att_1",
    "name": "cat.png",
    "mediaType": "image/png",
    "size": 70,
    "width": 1,
    "height": 1,
}
FILE = {
    "type": "file",
    "attachmentId": "att_2",
    "name": "notes.csv",
    "mediaType": "text/csv",
    "size": 2048,
    "path": "notes-1.csv",
}


async def test_a_user_message_with_an_image_becomes_text_and_image_url_parts(server, make_provider):
    server.script(COMPLETIONS, openai_text_reply("a cat"))
    seen = {**IMAGE, "data": PNG_BASE64}  # what chat.services.vision gives a vision model
    unseen = {**IMAGE, "attachmentId": "att_3", "name": "dog.png"}
    described = {**unseen, "description": "A dog asleep.", "describedBy": "v/see"}
    messages = [
        Message("user", [{"type": "text", "text": "What is this?"}, seen, FILE, unseen]),
        Message("assistant", [{"type": "text", "text": "Which one?"}]),
        Message("user", [{"type": "text", "text": ""}, described]),
    ]

    _, error = await run_stream(make_provider(server), ProviderRequest("m", messages))

    assert error is None
    assert server.requests[0].body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_BASE64}},
                {
                    "type": "text",
                    "text": "[Attached file: notes.csv (2 KiB, text/csv), saved as notes-1.csv "
                    "in the working directory]",
                },
                {
                    "type": "text",
                    "text": "[Image: dog.png, 1×1. You cannot see images, so only its name and "
                    "size are given.]",
                },
            ],
        },
        {"role": "assistant", "content": "Which one?"},
        # No image among the parts: one string, as for any text message.
        {
            "role": "user",
            "content": "[Image: dog.png, 1×1. You cannot see images; v/see described it: "
            "A dog asleep.]",
        },
    ]
