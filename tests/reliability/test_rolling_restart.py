"""Deploys that interrupt no turn: a rolling restart of both workers of the two-worker
PostgreSQL + Redis cluster while 100 turns stream (docs/deploy.md).

The workers sit behind a health-checking TCP load balancer (tests.servers.BalancingProxy, as
nginx or HAProxy would be) and every client goes through it: JSON WebSocket clients, NDJSON
``POST /chat`` streams and the web page in Chromium. Each worker's model is served under a
path of its own (``/a``, ``/b``), so the test holds each worker's turns apart:

1. 100 turns start and stream their first words; every one then waits.
2. Worker A gets SIGTERM: it drains. Its sockets' clients reconnect — through the proxy, so to
   B — and resubscribe; B replays A's running turns to them. Then B's turns stream on (A is
   restarting meanwhile) and A's turns finish; A exits by itself and is started again.
3. The same for B: its clients move to the new A, its turns finish, it exits and starts.

Afterwards: no turn was interrupted, every client has the complete text with no chunk lost or
repeated (its events equal the log), and every client reconnected to the other worker.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid

import httpx
import pytest
import websockets
from playwright.sync_api import expect, sync_playwright
from websockets.exceptions import ConnectionClosed

from tests.chat.live import cluster_env, manage, start_stack, wait_for
from tests.chat.providers.sse_server import OPENAI_DONE, Reply, openai_chunk, openai_usage
from tests.reliability.helpers import Stream, chunks_from_events, log_of
from tests.servers import BalancingProxy, RedisServer
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

TURNS = 100
PAGES = 2  # turns started from the web page in Chromium
STREAMS = 6  # turns started with POST /chat (NDJSON)
SOCKETS = TURNS - PAGES - STREAMS  # turns started with chat.send on a JSON WebSocket
A_PATH, B_PATH = "/a", "/b"
A_TEXT, B_TEXT = "Hello brave", "Hello brave new world"
GOING_AWAY = 4503
EXIT_TIMEOUT = 120.0
PHASE_DEADLINE = 120.0  # each phase of the run; a bound, not a timing assertion


@pytest.fixture(scope="module")
def redis():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(postgres_server, redis):
    env = cluster_env(postgres_server, redis.url, "rolling") | {
        "DISPATCH_DRAIN_SECONDS": "300",
        # The production beat: 100 turns starting at once on a small machine can hold the
        # worker's database thread longer than the quick sweep's 3 s (tests of the sweep use it).
        "DISPATCH_HEARTBEAT_SECONDS": "5",
        "DISPATCH_STALE_SECONDS": "30",
    }
    yield from start_stack(env, workers=2, model_paths=(A_PATH, B_PATH))


@pytest.fixture(scope="module")
def proxy(cluster):
    with BalancingProxy([w.port for w in cluster.workers]) as proxy:
        wait_for(lambda: all(proxy.healthy.values()), "the proxy to see both workers")
        yield proxy


def reply(*parts) -> Reply:
    """A streamed answer: text parts, with gates (threading.Event) between them."""
    events = [openai_chunk({"role": "assistant", "content": ""})]
    events += [p if isinstance(p, threading.Event) else openai_chunk({"content": p}) for p in parts]
    events += [openai_chunk({}, "stop"), openai_chunk(usage=openai_usage(10, 4)), OPENAI_DONE]
    return Reply(events=events)


class JsonClient:
    """A client of the JSON protocol that reconnects as docs/protocol.md tells it to: on a
    ``reconnect`` frame, or a close (4503 or any), it opens a new socket (through the proxy) and
    subscribes again; the replay of the running turn starts from its ``user-message``, so the
    events it already has must come again, equal and in order, before new ones."""

    def __init__(self, url: str, proxy: BalancingProxy, conversation_id: str):
        self.url, self.proxy, self.conversation_id = url, proxy, conversation_id
        self.events: list[dict] = []
        self.routes: list[int] = []  # the worker of each socket that got its catalog
        self.position = 0  # events of the turn received on the current socket
        self.connected = False
        self.hints = self.refusals = 0
        self.problem: str | None = None

    @property
    def sealed(self) -> bool:
        return bool(self.events) and self.events[-1]["type"] == "turn-sealed"

    @property
    def synced(self) -> bool:
        """Connected, and the replay brought back everything it had seen."""
        return self.connected and self.position >= len(self.events) > 0

    async def run(self) -> None:
        attempt = 0
        while not self.sealed and self.problem is None:
            try:
                async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
                    assert json.loads(await ws.recv())["type"] == "catalog"
                    self.routes.append(self.proxy.backend_of(ws.local_address[1]))
                    op = "chat.subscribe" if self.events else "chat.send"
                    frame = {"type": op, "conversationId": self.conversation_id}
                    await ws.send(json.dumps(frame | {"message": "go"}))
                    self.position, self.connected, attempt = 0, True, 0
                    await self._read(ws)
            except ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code == GOING_AWAY:
                    self.refusals += 1
            except OSError:
                pass
            finally:
                self.connected = False
            if not self.sealed:  # a client's pause before reconnecting, growing while refused
                attempt += 1
                await asyncio.sleep(random.uniform(0, min(0.05 * 2**attempt, 1.0)))

    async def _read(self, ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "reconnect":
                self.hints += 1
                return
            if frame["type"] == "chat.error":
                self.problem = f"chat.error: {frame}"
                return
            if frame["type"] != "chat.delta":
                continue
            event = frame["event"]
            if self.position < len(self.events):
                if event != self.events[self.position]:
                    self.problem = f"replay differs at {self.position}: {event}"
                    return
            else:
                self.events.append(event)
            self.position += 1
            if self.sealed:
                return


class Crowd:
    """The JSON clients, run by an event loop of their own in a thread."""

    def __init__(self, clients: list[JsonClient]):
        self.clients = clients
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        await asyncio.gather(*(client.run() for client in self.clients))


def text_of(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "text-delta")


def health(worker) -> dict:
    return httpx.get(worker.url + "/health", timeout=30).json()


def session_cookie(cluster) -> str:
    code = (
        "from django.contrib.auth.models import User; from django.test import Client; "
        "c = Client(); c.force_login(User.objects.get(username='alice')); "
        "print(c.cookies['sessionid'].value)"
    )
    return manage(["shell", "-c", code], **cluster.env).strip().splitlines()[-1]


def test_a_rolling_restart_interrupts_no_turn(cluster, proxy, gates):
    a, b = cluster.workers
    gate_a, gate_b1, gate_b2 = gates(), gates(), gates()
    cluster.scripted.script(
        A_PATH + "/v1/chat/completions", *[reply("Hello", gate_a, " brave")] * TURNS
    )
    cluster.scripted.script(
        B_PATH + "/v1/chat/completions",
        *[reply("Hello", gate_b1, " brave", gate_b2, " new world")] * TURNS,
    )
    ws_url = proxy.url.replace("http://", "ws://") + f"/ws?token={cluster.token}"
    clients = [JsonClient(ws_url, proxy, f"rr-{n}-{uuid.uuid4().hex[:8]}") for n in range(SOCKETS)]
    started = time.monotonic()
    crowd = Crowd(clients)
    streams = [
        Stream(proxy.url, cluster.headers(), f"rs-{n}-{uuid.uuid4().hex[:8]}", "go")
        for n in range(STREAMS)
    ]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies(
            [{"name": "sessionid", "value": session_cookie(cluster), "url": proxy.url}]
        )
        context.set_default_timeout(PHASE_DEADLINE * 1000)
        context.add_init_script(
            "window.wsOpens = 0;"
            "document.addEventListener('htmx:wsOpen', function () { window.wsOpens += 1; });"
        )
        pages = {}
        for n in range(PAGES):
            page, conversation_id = context.new_page(), f"rp-{n}-{uuid.uuid4().hex[:8]}"
            page.goto(f"{proxy.url}/c/{conversation_id}")
            expect(page.locator("body[data-socket=open]")).to_have_count(1)
            page.locator("#message").fill("go")
            page.locator("#message").press("Enter")
            pages[conversation_id] = page

        # 1. Every turn streams its first words, then waits.
        wait_for(
            lambda: all(c.synced and text_of(c.events) for c in clients),
            "the sockets' turns",
            PHASE_DEADLINE,
        )
        wait_for(
            lambda: all(text_of(s.events) for s in streams), "the NDJSON turns", PHASE_DEADLINE
        )
        for page in pages.values():
            expect(page.locator("#live .md")).to_contain_text("Hello")
        on_a, on_b = health(a)["runningTurns"], health(b)["runningTurns"]
        assert on_a + on_b == TURNS and on_a and on_b, (on_a, on_b)
        all_streaming = time.monotonic()

        # 2. Restart A: its clients move to B while its turns finish there.
        a_term = time.monotonic()
        a.terminate()
        wait_for(lambda: health(a)["draining"], "A to drain")
        moved = [c for c in clients if c.routes[0] == a.port]
        wait_for(
            lambda: all(c.synced and c.routes[-1] == b.port for c in moved),
            "A's socket clients to be back, on B",
            PHASE_DEADLINE,
        )
        for page in pages.values():
            expect(page.locator("body[data-socket=open]")).to_have_count(1)
            expect(page.locator("#live .md")).to_contain_text("Hello")
        gate_b1.set()  # B's turns stream on while A restarts
        gate_a.set()  # A's turns finish: then A exits by itself
        assert a.wait(EXIT_TIMEOUT) == 0
        a_exit = time.monotonic()
        a.start()
        wait_for(lambda: proxy.healthy[a.port], "the proxy to see the new A", PHASE_DEADLINE)
        a_back = time.monotonic()

        # 3. Restart B: its clients move to the new A while its turns finish.
        b_term = time.monotonic()
        b.terminate()
        wait_for(lambda: health(b)["draining"], "B to drain")
        waiting = [c for c in clients if not c.sealed]
        assert waiting and all(c.routes[0] == b.port for c in waiting)
        wait_for(
            lambda: all(c.synced and c.routes[-1] == a.port for c in waiting),
            "B's socket clients to be back, on A",
            PHASE_DEADLINE,
        )
        gate_b2.set()
        assert b.wait(EXIT_TIMEOUT) == 0
        b_exit = time.monotonic()
        b.start()

        wait_for(
            lambda: all(c.sealed or c.problem for c in clients),
            "every socket's turn",
            PHASE_DEADLINE,
        )
        wait_for(
            lambda: all(s.ended.is_set() for s in streams), "every NDJSON stream", PHASE_DEADLINE
        )
        for page in pages.values():
            expect(page.locator("#history .md")).to_contain_text("Hello brave")
            expect(page.locator("#live")).to_be_empty()
        page_texts = {
            cid: page.locator("#history .md").all_inner_texts() for cid, page in pages.items()
        }
        page_opens = {cid: page.evaluate("window.wsOpens") for cid, page in pages.items()}
        browser.close()
    crowd.thread.join(30)
    finished = time.monotonic()

    # No turn interrupted, nothing lost or repeated, every client on the other worker.
    assert [c.problem for c in clients if c.problem] == []
    with cluster.client(worker=1) as client:
        for c in clients:
            types = [e["type"] for e in c.events]
            assert types[:2] == ["user-message", "turn-start"] and types.count("done") == 1
            assert types[-2:] == ["done", "turn-sealed"] and c.events[-2]["reason"] == "stop"
            assert text_of(c.events) == (A_TEXT if c.routes[0] == a.port else B_TEXT)
            assert log_of(client.get(f"/conversations/{c.conversation_id}").json()["chunks"]) == (
                chunks_from_events(c.events)
            )
            assert len(c.routes) == 2 and c.routes[0] != c.routes[1], c.routes
            assert c.hints == 1
        for s in streams:
            assert s.status == 200 and s.types()[-2:] == ["done", "turn-sealed"]
            assert s.events[-2]["reason"] == "stop" and text_of(s.events) in (A_TEXT, B_TEXT)
            history = client.get(f"/conversations/{s.events[0]['conversationId']}").json()
            assert log_of(history["chunks"]) == chunks_from_events(s.events)
        for cid, texts in page_texts.items():
            (stored,) = [
                c["chunk"]["text"]
                for c in client.get(f"/conversations/{cid}").json()["chunks"]
                if c["role"] == "assistant"
            ]
            assert stored in (A_TEXT, B_TEXT) and texts == [stored]
            assert page_opens[cid] >= 2  # it reconnected at least once: both workers drained
        conversations = [c.conversation_id for c in clients]
        conversations += [s.events[0]["conversationId"] for s in streams] + list(pages)
        reasons = [
            turn["finishReason"]
            for cid in conversations
            for turn in client.get(f"/conversations/{cid}/metrics").json()["turns"]
        ]
    assert reasons == ["stop"] * TURNS  # 0 interrupted

    print(
        f"\nrolling restart: {TURNS} turns ({SOCKETS} sockets, {STREAMS} NDJSON, {PAGES} pages), "
        f"{on_a} on A and {on_b} on B; all streaming after {all_streaming - started:.1f}s; "
        f"A: SIGTERM to exit {a_exit - a_term:.1f}s, start to healthy {a_back - a_exit:.1f}s; "
        f"B: SIGTERM to exit {b_exit - b_term:.1f}s; done after {finished - started:.1f}s; "
        f"{sum(c.hints for c in clients)} reconnect hints, "
        f"{sum(c.refusals for c in clients)} sockets refused with 4503 while draining, "
        f"{sum(len(c.routes) - 1 for c in clients)} socket reconnects, page sockets opened "
        f"{sorted(page_opens.values())}; 0 interrupted, 0 lost, 0 repeated"
    )
