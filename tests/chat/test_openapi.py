"""Bad input never hurts: schemathesis against the served OpenAPI document
(docs/protocol.md#5-http-api)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.chat.live import start_stack
from tests.servers import VENV_BIN

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


@pytest.fixture(scope="module")
def api_stack():
    yield from start_stack()


def test_schemathesis_finds_no_5xx_and_no_schema_violation(api_stack):
    # The CLI (schemathesis' pytest plugin does not run under pytest 9) against the live server.
    run = subprocess.run(
        [str(VENV_BIN / "schemathesis"), "run", api_stack.url + "/api/openapi.json"]
        + ["-H", f"Authorization: Bearer {api_stack.token}", "--checks", CHECKS]
        + ["--max-examples", "30", "--seed", "1", "--no-color"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    document = httpx.get(api_stack.url + "/api/openapi.json").json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert f"{operations}/{operations}" in run.stdout  # every operation was exercised
    # The server is still healthy afterwards.
    assert httpx.get(api_stack.url + "/health").json()["ok"] is True


def test_docs_are_served_without_internet(api_stack):
    docs = httpx.get(api_stack.url + "/api/docs")
    assert docs.status_code == 200
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert asset in docs.text
        src = next(part for part in docs.text.split('"') if part.endswith(asset))
        assert src.startswith("/"), src  # served by this server, not a CDN
        assert httpx.get(api_stack.url + src).status_code == 200
    document = httpx.get(api_stack.url + "/api/openapi.json").json()
    assert {
        "/chat",
        "/models",
        "/conversations",
        "/conversations/{conversation_id}",
        "/health",
        "/metrics/throughput",
        "/conversations/{conversation_id}/metrics",
    } <= set(document["paths"])
