"""CORS for browser clients on other origins (DISPATCH_CORS_ORIGINS): bearer tokens only,
exact origins, preflights for every method, ``X-Conversation-Id`` readable; a foreign
origin gets no CORS header at all. (tests/web/test_cross_origin.py does it in Chromium.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.test import AsyncClient, Client

from tests.security.conftest import MODEL, ndjson_events, script_answers
from tests.servers import REPO_ROOT, subprocess_env

ALLOWED = "https://app.example.com"
FOREIGN = "https://app.example.com:8443"  # same host, another port: another origin


@pytest.fixture(autouse=True)
def cors_origins(settings):
    settings.DISPATCH_CORS_ORIGINS = [ALLOWED]
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]


def preflight(path: str, method: str, origin: str):
    return Client().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/chat"),
        ("PUT", "/conversations/c1/title"),
        ("PUT", "/conversations/c1/model"),
        ("DELETE", "/conversations/c1/queue/m1"),
        ("GET", "/conversations"),
    ],
)
def test_preflights_from_an_allowed_origin_allow_the_call(method, path):
    response = preflight(path, method, ALLOWED)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert method in response["Access-Control-Allow-Methods"].split(", ")
    allowed_headers = response["Access-Control-Allow-Headers"].split(", ")
    assert {"authorization", "content-type"} <= set(allowed_headers)
    assert "Access-Control-Allow-Credentials" not in response  # bearer tokens, no cookies


@pytest.mark.parametrize("origin", [FOREIGN, "http://app.example.com", "https://evil.example"])
def test_a_foreign_origin_gets_no_cors_headers(origin, api):
    for response in (
        preflight("/chat", "POST", origin),
        api.get("/conversations", headers={"Origin": origin}),
    ):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


@pytest.mark.django_db(transaction=True)
async def test_a_bearer_call_from_an_allowed_origin_exposes_the_conversation_id(scripted, token):
    script_answers(scripted, "hello across origins")
    response = await AsyncClient().post(
        "/chat",
        {"message": "hi", "model": MODEL},
        content_type="application/json",
        headers={"Origin": ALLOWED, "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert response["Access-Control-Expose-Headers"] == "X-Conversation-Id"
    assert response["X-Conversation-Id"]
    events = await ndjson_events(response)
    assert events[-1]["type"] == "turn-sealed"


@pytest.mark.django_db
def test_a_bearer_call_from_an_allowed_origin_needs_no_csrf_token(token):
    client = Client(enforce_csrf_checks=True)
    response = client.put(
        "/conversations/c1/title",
        json.dumps({"title": "from elsewhere"}),
        content_type="application/json",
        headers={"Origin": ALLOWED, "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    "value", ["*", "https://*.example.com", "https://app.example.com/path", "app.example.com"]
)
def test_anything_but_exact_origins_stops_start_up(tmp_path, value):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=subprocess_env(DISPATCH_VAR_DIR=str(tmp_path), DISPATCH_CORS_ORIGINS=value),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "DISPATCH_CORS_ORIGINS" in done.stderr and "not an origin" in done.stderr
