"""The SDK providers' shared stream plumbing: SSE framing, batching, failure classification."""

from __future__ import annotations

import json

import aiohttp
import httpx
import pytest

from chat.providers.streaming import SSEData, coalesce, relay, transport_failure
from chat.runtime.types import Finish, ProviderError, ReasoningDelta, TextDelta, ToolCallReady


def test_sse_payloads_are_cut_at_newlines_whatever_the_read_boundaries():
    stream = b'event: x\ndata: {"a": 1}\r\n\n: comment\ndata:{"b": 2}\n\ndata: [DONE]'
    for cut in range(len(stream) + 1):
        sse = SSEData()
        payloads = sse.feed(stream[:cut]) + sse.feed(stream[cut:]) + sse.end()
        assert payloads == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"], cut


def test_adjacent_deltas_of_one_kind_merge_and_nothing_else_does():
    call = ToolCallReady("c1", "read_file", {})
    events = [TextDelta("a"), TextDelta("b"), ReasoningDelta("r"), ReasoningDelta("s"),
              TextDelta("c"), call, TextDelta("d"), Finish("stop")]  # fmt: skip

    assert coalesce(events) == [TextDelta("ab", 2), ReasoningDelta("rs", 2), TextDelta("c"), call,
                                TextDelta("d"), Finish("stop")]  # fmt: skip
    assert coalesce([]) == []


async def collect(batches, feed):
    events = []
    try:
        async for event in relay(
            batches, feed, sdk_errors=(), classify=lambda exc: ProviderError(str(exc))
        ):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None


async def test_a_batch_becomes_one_delta_and_batches_stay_apart():
    async def batches():
        yield ["a", "b", "c"]
        yield ["d"]

    events, error = await collect(batches, lambda item: [TextDelta(item)])

    assert error is None
    assert events == [TextDelta("abc", 3), TextDelta("d")]


async def test_the_items_before_a_malformed_one_are_delivered_then_the_step_fails():
    async def batches():
        yield ['"a"', '"b"', "{not json", '"c"']

    events, error = await collect(batches, lambda item: [TextDelta(json.loads(item))])

    assert events == [TextDelta("ab", 2)]
    assert error is not None and error.code == "malformed-stream" and not error.retryable


def chained(outer: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as inner:
            raise outer from inner
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        # httpx-aiohttp reports a refused connection as a connect timeout: the cause decides.
        (chained(httpx.ConnectTimeout("x"), ConnectionRefusedError(111, "refused")), "connection"),
        (chained(httpx.ReadTimeout("x"), aiohttp.SocketTimeoutError("slow")), "timeout"),
        (httpx.ReadTimeout("x"), "timeout"),
        (httpx.ReadError("cut"), "connection"),
    ],
)
def test_transport_failures_are_retryable_and_told_apart(exc, code):
    failure = transport_failure(exc, timeouts=(), connections=())

    assert failure is not None and failure.retryable and failure.code == code


def test_other_failures_are_not_transport_failures():
    assert transport_failure(ValueError("x"), timeouts=(), connections=()) is None
