"""Browser tests: a real Daphne (SQLite, in-memory layer) whose model is a scripted
OpenAI-format SSE server in this process, driven by Playwright on Debian's Chromium.

The user logs in with a session cookie made by Django's test client ``force_login`` in the
stack's own database and copied into each browser context.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import sync_playwright

from tests.chat.providers.sse_server import ScriptedServer
from tests.servers import DaphneWorker, manage

COMPLETIONS = "/v1/chat/completions"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


# A 1×1 PNG: what the origin servers answer for an image.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class OriginServer:
    """A plain HTTP server on 127.0.0.1 (its own origin): ``/`` is an empty page for a
    browser to run scripts from, every other path a 1×1 PNG; it records the paths asked for.
    """

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                hits.append(self.path)
                page = self.path == "/"
                body = b"<!doctype html><title>client</title><body>client</body>" if page else PIXEL
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if page else "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def origins():
    """Two other local origins: ``allowed`` is in DISPATCH_CORS_ORIGINS and
    DISPATCH_IMAGE_ORIGINS of the stack, ``foreign`` (same host, another port) is not."""
    allowed, foreign = OriginServer(), OriginServer()
    yield SimpleNamespace(allowed=allowed, foreign=foreign)
    allowed.close()
    foreign.close()


@pytest.fixture(scope="session")
def scripted():
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="session")
def stack_env(scripted, origins):
    root = Path(tempfile.mkdtemp(prefix="dispatch-web-"))
    config = root / "dispatch.toml"
    config.write_text(
        f"""
[runtime]
retry_delays = [0.3]

[tools]
workspace_root = "{root / "workspace"}"

[[credentials]]
name = "alpha"
kind = "openai"
base_url = "{scripted.url}/v1"
api_key_env = "DISPATCH_WEB_TEST_KEY"
models = ["fast", "smart"]
context_window = 8000
vision = ["fast"]                 # alpha/fast sees images, alpha/smart does not

[[credentials]]
name = "beta"
kind = "openai"
base_url = "{scripted.url}/v1"
api_key_env = "DISPATCH_WEB_TEST_KEY"
models = ["large"]
reasoning_effort = true
"""
    )
    env = {
        "DISPATCH_VAR_DIR": str(root / "var"),
        "DISPATCH_CONFIG": str(config),
        "DISPATCH_WEB_TEST_KEY": "test",
        "DISPATCH_CORS_ORIGINS": origins.allowed.url,
        "DISPATCH_IMAGE_ORIGINS": origins.allowed.url,
        "DISPATCH_TURN_RATE_LIMIT": "0",  # the suite starts many turns; the limit has its tests
    }
    manage(["migrate", "--noinput"], **env)
    return env


@pytest.fixture(scope="session")
def daphne(stack_env):
    with DaphneWorker(stack_env) as worker:
        yield worker


@pytest.fixture(scope="session")
def session_cookie(stack_env) -> str:
    code = (
        "from django.contrib.auth.models import User; from django.test import Client; "
        "c = Client(); u = User.objects.create_user('alice'); c.force_login(u); "
        "print(u.pk, c.cookies['sessionid'].value)"
    )
    pk, cookie = manage(["shell", "-c", code], **stack_env).strip().splitlines()[-1].split()
    # A file in alice's workspace for the tool-call tests to read.
    workspace = Path(stack_env["DISPATCH_CONFIG"]).parent / "workspace" / pk
    workspace.mkdir(parents=True)
    (workspace / "notes.txt").write_text("hello\n")
    return cookie


@pytest.fixture(scope="session")
def api_token(stack_env, session_cookie) -> str:
    """A bearer token of the stack's user (created with the session cookie's login)."""
    return manage(["dispatch_token", "alice"], **stack_env).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API refuses to run inside an asyncio loop; pytest-asyncio leaves
    # none running for sync tests. Its own loop runs in this thread while it is open, so it
    # is closed with the module: sync tests after it may use async_to_sync again.
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser, daphne, session_cookie):
    """A factory of logged-in browser contexts (closed at the end of the test)."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        context.add_cookies([{"name": "sessionid", "value": session_cookie, "url": daphne.url}])
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))
