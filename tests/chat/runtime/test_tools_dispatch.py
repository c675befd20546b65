"""Tool dispatch inside a step: concurrency-safety, identical calls, durations, errors, output."""

from __future__ import annotations

import asyncio

from chat.runtime import Finish, TextDelta, ToolCallReady
from tests.chat.runtime.fakes import GUARD_SECONDS, Turn


def calls_then_stop(*calls: ToolCallReady):
    return [[*calls, Finish("tool-calls")], [TextDelta("ok"), Finish("stop")]]


async def test_concurrency_safe_tools_run_in_parallel():
    # Each tool waits for the other to have started: run one after the other, they'd never end.
    def tools(bench):
        a, b = bench.tool("a"), bench.tool("b")
        a.gate, b.gate = b.started, a.started
        return [a, b]

    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "a", {}), ToolCallReady("c2", "b", {})), tools=tools
    )

    await turn.run()

    assert {r["toolCallId"] for r in turn.ports.of("tool-result")} == {"c1", "c2"}
    assert turn.tools["a"].active_at_start == [frozenset({"a"})]
    assert turn.tools["b"].active_at_start == [frozenset({"a", "b"})]


async def test_unsafe_tool_runs_alone():
    gates = {name: asyncio.Event() for name in ("s1", "s2", "u", "s3")}

    def tools(bench):
        made = [bench.tool(name, gate=gates[name]) for name in ("s1", "s2", "s3")]
        return [*made, bench.tool("u", safe=False, gate=gates["u"])]

    turn = Turn(
        calls_then_stop(
            ToolCallReady("c1", "s1", {}),
            ToolCallReady("c2", "s2", {}),
            ToolCallReady("c3", "u", {}),
            ToolCallReady("c4", "s3", {}),
        ),
        tools=tools,
    )
    task = turn.start()
    t = turn.tools

    async def started(name: str) -> None:
        await asyncio.wait_for(t[name].started.wait(), GUARD_SECONDS)

    await started("s1")
    await started("s2")  # the safe ones before the unsafe call run together
    assert not t["u"].started.is_set()
    gates["s1"].set()
    gates["s2"].set()
    await started("u")
    assert t["u"].active_at_start == [frozenset({"u"})]
    assert not t["s3"].started.is_set()
    gates["u"].set()
    await started("s3")
    assert t["s3"].active_at_start == [frozenset({"s3"})]
    gates["s3"].set()
    await task

    order = [r["toolCallId"] for r in turn.ports.of("tool-result")]
    assert order[2:] == ["c3", "c4"] and set(order[:2]) == {"c1", "c2"}


async def test_two_unsafe_tools_never_overlap():
    gate = asyncio.Event()

    def tools(bench):
        return [bench.tool("w1", safe=False, gate=gate), bench.tool("w2", safe=False)]

    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "w1", {}), ToolCallReady("c2", "w2", {})), tools=tools
    )
    task = turn.start()

    await asyncio.wait_for(turn.tools["w1"].started.wait(), GUARD_SECONDS)
    assert not turn.tools["w2"].started.is_set()
    gate.set()
    await task

    assert turn.tools["w2"].active_at_start == [frozenset({"w2"})]


async def test_identical_calls_run_once_but_each_gets_its_own_result():
    turn = Turn(
        calls_then_stop(
            ToolCallReady("c1", "look", {"path": "a", "n": 1}),
            ToolCallReady("c2", "look", {"n": 1, "path": "a"}),  # same input, other key order
            ToolCallReady("c3", "look", {"path": "b"}),
        ),
        tools=lambda bench: [bench.tool("look")],
    )

    await turn.run()

    assert turn.tools["look"].runs == [{"path": "a", "n": 1}, {"path": "b"}]
    results = {r["toolCallId"]: r for r in turn.ports.of("tool-result")}
    assert set(results) == {"c1", "c2", "c3"}
    assert results["c1"]["content"] == results["c2"]["content"] == 'look {"n": 1, "path": "a"}'
    persisted = turn.ports.steps()[0][1].chunks
    assert [c["toolCallId"] for c in persisted] == ["c1", "c2", "c3"]


async def test_identical_unsafe_calls_run_once():
    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "w", {"x": 1}), ToolCallReady("c2", "w", {"x": 1})),
        tools=lambda bench: [bench.tool("w", safe=False)],
    )

    await turn.run()

    assert turn.tools["w"].runs == [{"x": 1}]
    assert [r["toolCallId"] for r in turn.ports.of("tool-result")] == ["c1", "c2"]


async def test_each_tool_result_has_its_own_duration():
    def tools(bench):
        return [
            bench.tool("quick", safe=False, ticks=0.125),
            bench.tool("slow", safe=False, ticks=2.5),
        ]

    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "quick", {}), ToolCallReady("c2", "slow", {})),
        tools=tools,
    )

    await turn.run()

    durations = {r["toolCallId"]: r["durationMs"] for r in turn.ports.of("tool-result")}
    assert durations == {"c1": 125.0, "c2": 2500.0}


async def test_tool_result_event_fields():
    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "look", {"q": "x"})),
        tools=lambda bench: [bench.tool("look", content="found it", ticks=0.5)],
        cwd="/srv/work",
    )

    await turn.run()

    (result,) = turn.ports.of("tool-result")
    assert {k: v for k, v in result.items() if k not in ("conversationId", "turnId")} == {
        "type": "tool-result",
        "stepId": turn.step(0),
        "toolCallId": "c1",
        "toolName": "look",
        "content": "found it",
        "isError": False,
        "durationMs": 500.0,
    }
    assert turn.tools["look"].cwds == ["/srv/work"]


async def test_a_tool_raising_becomes_an_error_result_and_the_turn_goes_on():
    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "bad", {}), ToolCallReady("c2", "good", {})),
        tools=lambda bench: [bench.tool("bad", raises=ValueError("kaput")), bench.tool("good")],
    )

    await turn.run()

    results = {r["toolCallId"]: r for r in turn.ports.of("tool-result")}
    assert results["c1"]["isError"] is True
    assert "kaput" in results["c1"]["content"]
    assert results["c2"]["isError"] is False
    assert turn.ports.of("done")[0]["reason"] == "stop"
    assert turn.ports.steps()[0][1].chunks[0]["isError"] is True


async def test_a_tool_error_outcome_is_kept():
    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "look", {})),
        tools=lambda bench: [bench.tool("look", content="no such file", is_error=True)],
    )

    await turn.run()

    (result,) = turn.ports.of("tool-result")
    assert (result["content"], result["isError"]) == ("no such file", True)


async def test_unknown_tool_is_an_error_result():
    turn = Turn(calls_then_stop(ToolCallReady("c1", "nope", {"a": 1})))

    await turn.run()

    (result,) = turn.ports.of("tool-result")
    assert result["isError"] is True
    assert "nope" in result["content"]
    assert turn.provider.requests[1].messages[-1].chunks[0]["isError"] is True


async def test_tool_output_events_come_from_emit_output():
    turn = Turn(
        calls_then_stop(ToolCallReady("c1", "sh", {"command": "make"})),
        tools=lambda bench: [
            bench.tool("sh", output=[("building\n", "stdout"), ("warning!\n", "stderr")])
        ],
    )

    await turn.run()

    outputs = turn.ports.of("tool-output")
    assert [(o["toolCallId"], o["data"], o["stream"]) for o in outputs] == [
        ("c1", "building\n", "stdout"),
        ("c1", "warning!\n", "stderr"),
    ]
    assert turn.ports.index("tool-call") < turn.ports.index("tool-output")
    assert turn.ports.events.index(outputs[-1]) < turn.ports.index("tool-result")
    # Output is live only: the persisted result is the outcome.
    assert all(c["type"] != "tool-output" for m in turn.ports.steps()[0] for c in m.chunks)
