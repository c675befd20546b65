"""A browser client served from another origin (docs/protocol.md#5-http-api API + §5 socket, docs/deploy.md CORS):
in DISPATCH_CORS_ORIGINS it calls the API with a bearer token — preflights for POST /chat,
PUT and DELETE, the X-Conversation-Id header readable — and opens a socket; a foreign origin
(the same host on another port) gets neither."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.chat.providers.sse_server import openai_text_reply
from tests.web.conftest import COMPLETIONS

# Runs in the client page: the calls a separately hosted front end makes. Each step reports
# what it got, or the error the browser raised (a CORS refusal is a TypeError).
CLIENT = """async ({api, token, message}) => {
  const auth = {"Authorization": "Bearer " + token};
  const json = {...auth, "Content-Type": "application/json"};
  const report = {};
  async function step(name, call) {
    try { report[name] = await call(); } catch (error) { report[name] = {refused: String(error)}; }
  }
  await step("chat", async () => {
    const response = await fetch(api + "/chat", {method: "POST", headers: json,
      body: JSON.stringify({message, model: "alpha/fast"})});
    const lines = (await response.text()).trim().split("\\n").map((line) => JSON.parse(line));
    return {status: response.status, conversationId: response.headers.get("X-Conversation-Id"),
            types: lines.map((event) => event.type),
            text: lines.filter((e) => e.type === "text-delta").map((e) => e.delta).join("")};
  });
  const id = (report.chat && report.chat.conversationId) || "cross-origin";
  await step("rename", async () => {
    const response = await fetch(`${api}/conversations/${id}/title`, {method: "PUT",
      headers: json, body: JSON.stringify({title: "Renamed elsewhere"})});
    return {status: response.status, body: await response.json()};
  });
  await step("cancel", async () => {
    const response = await fetch(`${api}/conversations/${id}/queue/999999`,
      {method: "DELETE", headers: auth});
    return {status: response.status, body: await response.json()};
  });
  await step("socket", () => new Promise((resolve) => {
    const socket = new WebSocket(api.replace("http", "ws") + "/ws?token=" + token);
    socket.onmessage = (event) => { resolve({frame: JSON.parse(event.data).type}); socket.close(); };
    socket.onclose = (event) => resolve({closed: event.code});
  }));
  return report;
}"""


def run_client(browser, origin_url: str, api: str, token: str, message: str) -> dict:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(origin_url + "/")
        return page.evaluate(CLIENT, {"api": api, "token": token, "message": message})
    finally:
        context.close()


def test_an_allowed_origin_uses_the_api_and_a_socket(browser, daphne, origins, api_token, scripted):
    scripted.script(COMPLETIONS, openai_text_reply("Hi, other origin!"))
    report = run_client(browser, origins.allowed.url, daphne.url, api_token, "Hello from afar")

    chat = report["chat"]
    assert chat["status"] == 200, report
    assert chat["conversationId"]  # minted by the server, read through Expose-Headers
    assert chat["types"][0] == "user-message" and chat["types"][-1] == "turn-sealed"
    assert chat["text"] == "Hi, other origin!"
    assert report["rename"] == {
        "status": 200,
        "body": {"conversationId": chat["conversationId"], "title": "Renamed elsewhere"},
    }
    assert report["cancel"]["status"] == 200
    assert report["cancel"]["body"]["cancelled"] is False
    assert report["socket"] == {"frame": "catalog"}
    listed = httpx.get(
        daphne.url + "/conversations",
        params={"q": "Renamed elsewhere"},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert [c["id"] for c in listed.json()["conversations"]] == [chat["conversationId"]]


def test_a_foreign_origin_is_refused_everything(browser, daphne, origins, api_token, scripted):
    message = f"Foreign hello {uuid.uuid4().hex[:8]}"
    report = run_client(browser, origins.foreign.url, daphne.url, api_token, message)

    for step in ("chat", "rename", "cancel"):
        assert "Failed to fetch" in report[step]["refused"], report
    assert report["socket"] == {"closed": 1006}  # the handshake was refused
    # The refused preflight kept the POST itself from being sent: no conversation has it.
    listed = httpx.get(
        daphne.url + "/conversations",
        params={"q": message},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert listed.status_code == 200
    assert listed.json()["conversations"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/chat"), ("PUT", "/conversations/x/title"), ("DELETE", "/conversations/x/queue/y")],
)
def test_preflights_on_the_real_server(daphne, origins, method, path):
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            daphne.url + path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )

    allowed = preflight(origins.allowed.url)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origins.allowed.url
    assert method in allowed.headers["access-control-allow-methods"]
    foreign = preflight(origins.foreign.url)
    assert not [name for name in foreign.headers if name.startswith("access-control-")]
