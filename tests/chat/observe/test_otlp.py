"""The OTEL_* environment switches a real worker's tracing on: its spans reach an OTLP/HTTP
receiver (a real HTTP server decoding the protobuf export requests)."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.chat.live import COMPLETIONS, start_stack, wait_for
from tests.chat.providers.sse_server import openai_text_reply
from tests.servers import REPO_ROOT, subprocess_env


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: every span it was sent, with its resource."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict, object]] = []  # (resource attributes, span)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                export = ExportTraceServiceRequest.FromString(body)
                for resource_spans in export.resource_spans:
                    resource = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend((resource, s) for s in scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self) -> set[str]:
        return {span.name for _, span in self.spans}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def traced_stack(receiver):
    yield from start_stack(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    )


def test_otel_variables_turn_tracing_on_and_spans_reach_the_collector(traced_stack, receiver):
    traced_stack.scripted.script(COMPLETIONS, openai_text_reply("traced"))
    with traced_stack.client() as client:
        response = client.post("/chat", json={"message": "hi"})
        assert response.status_code == 200
        conversation_id = response.headers["X-Conversation-Id"]

    wait_for(
        lambda: {"POST /chat", "invoke_agent dispatch", "chat test-model"} <= receiver.names(),
        "the turn's spans at the receiver",
    )
    by_name = {span.name: (resource, span) for resource, span in receiver.spans}
    resource, turn = by_name["invoke_agent dispatch"]
    assert resource["service.name"] == "dispatch"
    assert {a.key: a.value.string_value for a in turn.attributes}["gen_ai.conversation.id"] == (
        conversation_id
    )
    _, http = by_name["POST /chat"]
    assert turn.parent_span_id == http.span_id and turn.trace_id == http.trace_id


def test_an_otlp_protocol_that_is_not_installed_stops_start_up(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import dispatch_site.asgi"],
        cwd=REPO_ROOT,
        env=subprocess_env(
            DISPATCH_VAR_DIR=str(tmp_path),
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Dispatch tracing: OTLP protocol 'grpc' is not supported: Dispatch exports traces over "
        "http/protobuf (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"
    )
