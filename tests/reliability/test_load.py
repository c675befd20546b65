"""Load without loss: 200 WebSocket clients run 1,000 turns against one real Daphne worker
(SQLite, in-memory layer) whose model is the fast stand-in; afterwards every conversation's
log is complete, gap-free and equal to what its client saw live, and every turn is sealed.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from bench.standin import TOOL_MARKER
from tests.chat.live import start_stack
from tests.reliability.helpers import (
    chunks_from_events,
    log_of,
    standin_process,
)

CLIENTS = 200
TURNS_PER_CLIENT = 5
TOOL_EVERY = 3  # every third conversation's turns take two steps (a tool call, then text)
CONNECTS_AT_ONCE = 40  # stay inside the server's listen backlog
DEADLINE = 100.0  # the whole run (about 40 s on an idle 2-core box); fails rather than hang


@pytest.fixture(scope="module")
def load_stack():
    for standin_url in standin_process():
        yield from start_stack(model_url=standin_url)


async def _client(url: str, conversation_id: str, tools: bool, connects) -> list[list[dict]]:
    """One WebSocket client: its turns one after another; the live events of each turn."""
    async with connects:
        ws = await websockets.connect(url, max_size=None, open_timeout=DEADLINE)
    turns: list[list[dict]] = []
    async with ws:
        assert json.loads(await ws.recv())["type"] == "catalog"
        for index in range(TURNS_PER_CLIENT):
            message = f"turn {index} of {conversation_id}" + (f" {TOOL_MARKER}" if tools else "")
            await ws.send(
                json.dumps(
                    {"type": "chat.send", "conversationId": conversation_id, "message": message}
                )
            )
            events: list[dict] = []
            while not events or events[-1]["type"] != "turn-sealed":
                frame = json.loads(await ws.recv())
                assert frame["type"] != "chat.error", frame
                if frame["type"] == "chat.delta":
                    events.append(frame["event"])
            turns.append(events)
    return turns


async def _run_clients(stack) -> dict[str, tuple[bool, list[list[dict]]]]:
    connects = asyncio.Semaphore(CONNECTS_AT_ONCE)
    plan = {f"load-{n}-{uuid.uuid4().hex[:8]}": n % TOOL_EVERY == 0 for n in range(CLIENTS)}
    async with asyncio.timeout(DEADLINE):
        results = await asyncio.gather(
            *(_client(stack.ws_url(), cid, tools, connects) for cid, tools in plan.items())
        )
    return {cid: (plan[cid], turns) for cid, turns in zip(plan, results, strict=True)}


async def _persisted(stack, conversation_ids) -> dict[str, tuple[dict, dict]]:
    reads = asyncio.Semaphore(20)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers(), timeout=30) as http:

        async def read(cid: str) -> tuple[dict, dict]:
            async with reads:
                history = await http.get(f"/conversations/{cid}")
                metrics = await http.get(f"/conversations/{cid}/metrics")
            assert history.status_code == metrics.status_code == 200
            return history.json(), metrics.json()

        pairs = await asyncio.gather(*(read(cid) for cid in conversation_ids))
    return dict(zip(conversation_ids, pairs, strict=True))


async def test_a_thousand_turns_from_two_hundred_sockets_lose_nothing(load_stack):
    live = await _run_clients(load_stack)
    persisted = await _persisted(load_stack, list(live))

    assert sum(len(turns) for _, turns in live.values()) == CLIENTS * TURNS_PER_CLIENT
    for cid, (tools, turns) in live.items():
        history, metrics = persisted[cid]
        expected: list[tuple[str, dict]] = []
        for events in turns:
            types = [e["type"] for e in events]
            assert types[:2] == ["user-message", "turn-start"], cid
            assert types[-2:] == ["done", "turn-sealed"], cid
            assert types.count("done") == 1 and events[-2]["reason"] == "stop", cid
            assert types.count("step-complete") == (2 if tools else 1), cid
            assert {e["turnId"] for e in events} == {events[0]["turnId"]}, cid
            expected += chunks_from_events(events)
        # Complete, gap-free from seq 1, and exactly what the client saw live.
        assert history["chunks"][0]["seq"] == 1
        assert log_of(history["chunks"]) == expected, cid
        assert history["latestSeq"] == len(expected)
        # Every turn is sealed, in order, with the steps the client saw.
        sealed = metrics["turns"]
        assert [t["turnId"] for t in sealed] == [events[0]["turnId"] for events in turns]
        assert [t["finishReason"] for t in sealed] == ["stop"] * TURNS_PER_CLIENT
        assert [[s["stepId"] for s in t["steps"]] for t in sealed] == [
            [e["stepId"] for e in events if e["type"] == "step-complete"] for events in turns
        ]
