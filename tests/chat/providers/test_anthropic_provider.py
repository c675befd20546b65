"""The Anthropic provider against a real scripted HTTP/SSE server."""

from __future__ import annotations

import pytest

from chat.providers.anthropic import AnthropicProvider
from chat.providers.sampling import Sampling
from chat.providers.streaming import ListedModel
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
    Reply,
    anthropic_end,
    anthropic_event,
    anthropic_message_start,
    anthropic_text_reply,
    anthropic_tool_reply,
)
from tests.chat.providers.streams import run_stream

MESSAGES = "/v1/messages"


@pytest.fixture
def make_provider(closing):
    """``make_provider(server, **options)``, closed after the test."""
    return lambda server, **options: closing(
        AnthropicProvider(base_url=server.url, api_key="test-key", **options)
    )


def user(text: str) -> Message:
    return Message("user", [{"type": "text", "text": text}])


def ask(text: str = "hi", **fields) -> ProviderRequest:
    return ProviderRequest(model="claude-test", messages=[user(text)], **fields)


def block_start(index: int, block: dict) -> object:
    return anthropic_event("content_block_start", index=index, content_block=block)


def block_delta(index: int, delta: dict) -> object:
    return anthropic_event("content_block_delta", index=index, delta=delta)


def block_stop(index: int) -> object:
    return anthropic_event("content_block_stop", index=index)


async def test_text_streams_then_usage_then_finish(server, make_provider):
    server.script(MESSAGES, anthropic_text_reply("Hello"))
    request = ProviderRequest(
        model="claude-test",
        messages=[Message("system", [{"type": "system", "text": "Be brief."}]), user("hi")],
        reasoning_effort="high",
    )

    events, error = await run_stream(make_provider(server), request)

    assert error is None
    assert events == [TextDelta("Hello"), UsageReport(Usage(10, 5)), Finish("stop")]
    sent = server.requests[0]
    assert sent.headers["X-Api-Key"] == "test-key"
    assert sent.body["system"] == "Be brief."
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent.body["max_tokens"] == 8192
    assert "thinking" not in sent.body  # the credential did not enable reasoning


def thinking_then_tool_reply() -> Reply:
    return Reply(
        events=[
            anthropic_message_start(),
            block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            block_delta(0, {"type": "thinking_delta", "thinking": "Need the "}),
            block_delta(0, {"type": "thinking_delta", "thinking": "file."}),
            block_delta(0, {"type": "signature_delta", "signature": "sig-123"}),
            block_stop(0),
            block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}),
            block_delta(1, {"type": "input_json_delta", "partial_json": '{"path": "a"}'}),
            block_stop(1),
            *anthropic_end("tool_use"),
        ]
    )


async def test_thinking_streams_and_its_signed_block_goes_back_in_the_tool_loop(
    server, make_provider
):
    server.script(MESSAGES, thinking_then_tool_reply(), anthropic_text_reply("It says hi."))
    provider = make_provider(server, thinking=True)

    events, error = await run_stream(provider, ask("read a", reasoning_effort="medium"))

    assert error is None
    assert events[:3] == [
        ReasoningDelta("Need the "),
        ReasoningDelta("file."),
        ToolCallReady("toolu_1", "read", {"path": "a"}),
    ]
    assert events[-1] == Finish("tool-calls")
    first = server.requests[0].body
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert first["max_tokens"] == 8192 + 4096

    history = [
        user("read a"),
        Message(
            "assistant",
            [
                {"type": "thinking", "text": "Need the file."},
                {"type": "tool-call", "toolCallId": "toolu_1", "toolName": "read", "input": {}},
            ],
        ),
        Message(
            "tool",
            [
                {
                    "type": "tool-result",
                    "toolCallId": "toolu_1",
                    "toolName": "read",
                    "content": "hi",
                    "isError": False,
                }
            ],
        ),
    ]
    request = ProviderRequest(model="claude-test", messages=history, reasoning_effort="medium")
    events, error = await run_stream(provider, request)

    assert error is None and events[0] == TextDelta("It says hi.")
    second = server.requests[1].body
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Need the file.", "signature": "sig-123"},
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}},
        ],
    }
    assert second["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi", "is_error": False}
        ],
    }


async def test_open_tool_loop_without_signed_thinking_turns_thinking_off(server, make_provider):
    server.script(MESSAGES, anthropic_text_reply("ok"))
    history = [
        user("read a"),
        Message(
            "assistant",
            [
                {"type": "thinking", "text": "from another process"},
                {"type": "tool-call", "toolCallId": "toolu_9", "toolName": "read", "input": {}},
            ],
        ),
        Message(
            "tool",
            [
                {
                    "type": "tool-result",
                    "toolCallId": "toolu_9",
                    "toolName": "read",
                    "content": "x",
                    "isError": True,
                }
            ],
        ),
        user("and now?"),  # steering: merged after the tool result, the loop is still open
    ]
    request = ProviderRequest(model="claude-test", messages=history, reasoning_effort="max")

    _, error = await run_stream(make_provider(server, thinking=True), request)

    assert error is None
    body = server.requests[0].body
    assert "thinking" not in body
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "read", "input": {}}
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_9", "content": "x", "is_error": True},
        {"type": "text", "text": "and now?"},
    ]


async def test_thinking_budget_follows_the_reasoning_effort_and_a_new_prompt(server, make_provider):
    server.script(MESSAGES, anthropic_text_reply("ok"))
    history = [
        user("first"),
        Message(
            "assistant",
            [{"type": "tool-call", "toolCallId": "t", "toolName": "read", "input": {}}],
        ),
        Message(
            "tool",
            [
                {
                    "type": "tool-result",
                    "toolCallId": "t",
                    "toolName": "read",
                    "content": "x",
                    "isError": False,
                }
            ],
        ),
        Message("assistant", [{"type": "text", "text": "done"}]),
        user("second"),  # a new prompt closes the old loop: thinking may be on
    ]
    request = ProviderRequest(
        model="claude-test", messages=history, reasoning_effort="xhigh", max_tokens=1000
    )

    await run_stream(make_provider(server, thinking=True), request)

    body = server.requests[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert body["max_tokens"] == 1000 + 16384


async def test_tool_use_partial_json_becomes_one_call_at_block_stop(server, make_provider):
    server.script(
        MESSAGES,
        Reply(
            events=[
                anthropic_message_start(),
                block_start(0, {"type": "text", "text": ""}),
                block_delta(0, {"type": "text_delta", "text": "Reading."}),
                block_stop(0),
                block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "read", "input": {}}),
                block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
                block_delta(1, {"type": "input_json_delta", "partial_json": '{"path": "a.'}),
                block_delta(1, {"type": "input_json_delta", "partial_json": 'txt", "limit"'}),
                block_delta(1, {"type": "input_json_delta", "partial_json": ": 2}"}),
                block_stop(1),
                block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "ls", "input": {}}),
                block_stop(2),
                *anthropic_end("tool_use", output_tokens=30),
            ]
        ),
    )
    tool = ToolSpec("read", "Read a file", {"type": "object"})

    events, error = await run_stream(make_provider(server), ask(tools=[tool]))

    assert error is None
    assert events == [
        TextDelta("Reading."),
        ToolCallReady("toolu_a", "read", {"path": "a.txt", "limit": 2}),
        ToolCallReady("toolu_b", "ls", {}),
        UsageReport(Usage(10, 30)),
        Finish("tool-calls"),
    ]
    assert server.requests[0].body["tools"] == [
        {"name": "read", "description": "Read a file", "input_schema": {"type": "object"}}
    ]


async def test_cache_usage_is_normalized_into_input_tokens(server, make_provider):
    server.script(
        MESSAGES,
        Reply(
            events=[
                anthropic_message_start(
                    input_tokens=10, cache_read_input_tokens=100, cache_creation_input_tokens=50
                ),
                block_start(0, {"type": "text", "text": ""}),
                block_delta(0, {"type": "text_delta", "text": "hi"}),
                block_stop(0),
                *anthropic_end("max_tokens", output_tokens=7),
            ]
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    assert events[-2:] == [
        UsageReport(Usage(160, 7, cache_read_tokens=100, cache_write_tokens=50)),
        Finish("length"),
    ]


async def test_overloaded_error_event_in_the_stream_is_retryable(server, make_provider):
    server.script(
        MESSAGES,
        Reply(
            events=[
                anthropic_message_start(),
                anthropic_event(
                    "error", error={"type": "overloaded_error", "message": "Overloaded"}
                ),
            ]
        ),
    )

    _, error = await run_stream(make_provider(server), ask())

    assert error is not None and error.retryable
    assert error.code == "overloaded_error"
    assert "Overloaded" in error.message


async def test_invalid_request_error_event_is_not_retryable(server, make_provider):
    server.script(
        MESSAGES,
        Reply(
            events=[
                anthropic_event(
                    "error", error={"type": "invalid_request_error", "message": "bad thing"}
                )
            ]
        ),
    )

    _, error = await run_stream(make_provider(server), ask())

    assert error is not None and not error.retryable


@pytest.mark.parametrize(
    ("status", "retryable"), [(529, True), (429, True), (500, True), (400, False)]
)
async def test_http_errors_are_classified(server, status, retryable, make_provider):
    body = {"type": "error", "error": {"type": "some_error", "message": "nope"}}
    server.script(MESSAGES, Reply(status=status, body=body))

    _, error = await run_stream(make_provider(server), ask())

    assert error is not None
    assert (error.retryable, error.code, error.message) == (
        retryable,
        f"http-{status}",
        f"HTTP {status}: nope",
    )
    assert len(server.requests) == 1  # the SDK does not retry on its own


async def test_connection_cut_mid_stream_is_retryable(server, make_provider):
    server.script(
        MESSAGES,
        Reply(
            events=[
                anthropic_message_start(),
                block_start(0, {"type": "text", "text": ""}),
                block_delta(0, {"type": "text_delta", "text": "par"}),
            ],
            cut=True,
        ),
    )

    events, error = await run_stream(make_provider(server), ask())

    assert events == [TextDelta("par")]
    assert error is not None and error.retryable and error.code == "connection"


async def test_list_models(server, make_provider):
    server.script(
        "/v1/models",
        Reply(
            body={
                "data": [
                    {
                        "id": "claude-a",
                        "type": "model",
                        "display_name": "A",
                        "created_at": "2025-01-01T00:00:00Z",
                    },
                    {
                        "id": "claude-b",
                        "type": "model",
                        "display_name": "B",
                        "created_at": "2025-01-01T00:00:00Z",
                    },
                ],
                "has_more": False,
                "first_id": "claude-a",
                "last_id": "claude-b",
            }
        ),
    )

    assert await make_provider(server).list_models() == [
        ListedModel("claude-a"),
        ListedModel("claude-b"),
    ]


async def test_tool_loop_reply_helper_round_trips(server, make_provider):
    """The reusable script helper produces what the adapter understands."""
    server.script(MESSAGES, anthropic_tool_reply([("toolu_x", "ls", {"path": "."})]))

    events, error = await run_stream(make_provider(server), ask())

    assert error is None
    assert ToolCallReady("toolu_x", "ls", {"path": "."}) in events


async def test_sampling_is_sent_unless_thinking_is_on(server, make_provider):
    server.script(MESSAGES, anthropic_text_reply("ok"), anthropic_text_reply("ok"))
    sampling = Sampling(temperature=0.4, top_p=0.8, top_k=12)

    await run_stream(make_provider(server, sampling=sampling), ask())
    await run_stream(
        make_provider(server, sampling=sampling, thinking=True), ask(reasoning_effort="low")
    )

    plain, thinking = (request.body for request in server.requests)
    assert (plain["temperature"], plain["top_p"], plain["top_k"]) == (0.4, 0.8, 12)
    # The API refuses a temperature other than 1 and top_k with thinking on.
    assert "thinking" in thinking
    assert not {"temperature", "top_p", "top_k"} & set(thinking)


async def test_a_user_message_with_an_image_becomes_text_and_image_blocks(server, make_provider):
    server.script(MESSAGES, anthropic_text_reply("a cat"))
    data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    image = {
        "type": "image",
        "attachmentId": "att_1",
        "name": "cat.png",
        "mediaType": "image/png",
        "size": 70,
        "width": 1,
        "height": 1,
    }
    file = {"type": "file", "attachmentId": "att_2", "name": "a.txt", "size": 3, "path": "a.txt"}
    gone = {**image, "attachmentId": "att_3", "unavailable": True}
    message = Message(
        "user", [{"type": "text", "text": "Compare"}, {**image, "data": data}, file, gone]
    )

    _, error = await run_stream(make_provider(server), ProviderRequest("claude-test", [message]))

    assert error is None
    assert server.requests[0].body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": data},
                },
                {
                    "type": "text",
                    "text": "[Attached file: a.txt (3 bytes, unknown type), saved as a.txt in the "
                    "working directory]",
                },
                {
                    "type": "text",
                    "text": "[Image: cat.png, 1×1. The image is no longer available.]",
                },
            ],
        }
    ]
