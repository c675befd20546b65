"""The library code chat/overrides replaces or wraps is still the code it was written against.

Each override copies or wraps a library's internals (chat/overrides/__init__.py lists them).
When an upgrade changes one of those functions, this test fails and names it: re-read the new
upstream code, carry its change into the override (or drop the override), then record the new
fingerprint here.
"""

from __future__ import annotations

import hashlib
import inspect

import autobahn.websocket.protocol
import channels.consumer
import channels.generic.websocket
import channels.layers
import channels.sessions
import daphne.access
import daphne.cli
import daphne.http_protocol
import daphne.server
import daphne.ws_protocol
import django.core.handlers.asgi
import django.http.response
import llama_cpp
import pytest
import twisted.internet.abstract
import twisted.internet.asyncioreactor
import twisted.internet.tcp
import twisted.web.http

from chat.overrides import daphne as daphne_override

# (what, the upstream function, sha256 of its source, first 16 hex digits) — channels 4.3.2,
# llama-cpp-python 0.3.36, daphne 4.2.3, Twisted 26.10, autobahn 26.10, Django 5.2.
PINNED = [
    (
        "chat/routes/ndjson.py replaces StreamingHttpResponse.__aiter__",
        django.http.response.StreamingHttpResponse.__aiter__,
        "7b36f5b3e5de1837",
    ),
    (
        "chat/routes/ndjson.py reads the _iterator StreamingHttpResponse keeps",
        django.http.response.StreamingHttpResponse._set_streaming_content,
        "c11520c56e73d757",
    ),
    (
        "chat/routes/ndjson.py relies on ASGIHandler.send_response iterating aiter(response)",
        django.core.handlers.asgi.ASGIHandler.send_response,
        "77eda2b08689b44e",
    ),
    (
        "chat/overrides/consumer.py replaces AsyncConsumer.__call__",
        channels.consumer.AsyncConsumer.__call__,
        "e52238720872dbc3",
    ),
    (
        "chat/overrides/consumer.py replaces AsyncConsumer.dispatch",
        channels.consumer.AsyncConsumer.dispatch,
        "39f34e7d4fb0f655",
    ),
    (
        "chat/overrides/channel_layer.py replaces InMemoryChannelLayer.send",
        channels.layers.InMemoryChannelLayer.send,
        "a4dab1cd8aff886e",
    ),
    (
        "chat/overrides/channel_layer.py replaces InMemoryChannelLayer.group_send",
        channels.layers.InMemoryChannelLayer.group_send,
        "693c3172deb6431b",
    ),
    (
        "chat/overrides/channel_layer.py wraps InMemoryChannelLayer._clean_expired",
        channels.layers.InMemoryChannelLayer._clean_expired,
        "604032dae1cc01d2",
    ),
    (
        "chat/overrides/access_log.py: Daphne's CLI builds daphne.cli.AccessLogGenerator",
        daphne.cli.CommandLineInterface.run,
        "039cb21244f402ac",
    ),
    (
        "chat/overrides/access_log.py subclasses AccessLogGenerator.__call__",
        daphne.access.AccessLogGenerator.__call__,
        "6336ae23d2ba83f5",
    ),
    (
        "chat/overrides/llama.py wraps Llama.generate",
        llama_cpp.Llama.generate,
        "6f16f3b97ede3b9f",
    ),
    (
        "chat/overrides/daphne.py relies on HTTPFactory.buildProtocol reading WebRequest",
        daphne.http_protocol.HTTPFactory.buildProtocol,
        "35e878a6e0e41af2",
    ),
    (
        "chat/overrides/daphne.py passes parsePOSTFormSubmission through WebRequest.__init__",
        daphne_override._UPSTREAM.__init__,  # the original, even once install() replaced it
        "ec85d9f2a762a39f",
    ),
    (
        "chat/overrides/daphne.py turns off the multipart parsing of Request.requestReceived",
        twisted.web.http.Request.requestReceived,
        "99ca6c5e24305de4",
    ),
    (
        "chat/overrides/consumer.py skips InstanceSessionWrapper.send for sockets",
        channels.sessions.InstanceSessionWrapper.send,
        "e951315e4ef0f195",
    ),
    (
        "chat/overrides/twisted_write.py replaces FileDescriptor.write",
        twisted.internet.abstract.FileDescriptor.write,
        "3e46c97fc173bc7e",
    ),
    (
        "chat/overrides/twisted_write.py replaces FileDescriptor.writeSequence",
        twisted.internet.abstract.FileDescriptor.writeSequence,
        "1606f230d318191a",
    ),
    (
        "chat/overrides/twisted_write.py keeps ConnectionMixin.write for TLS",
        twisted.internet.tcp.Connection.write,
        "ea311df0946d3f99",
    ),
    (
        "chat/overrides/twisted_write.py keeps ConnectionMixin.writeSequence for TLS",
        twisted.internet.tcp.Connection.writeSequence,
        "a892b82c72b8fe70",
    ),
    (
        "chat/overrides/twisted_write.py flushes through FileDescriptor.doWrite",
        twisted.internet.abstract.FileDescriptor.doWrite,
        "a986d7b1b1054e43",
    ),
    (
        "chat/overrides/twisted_write.py flushes through the reactor's _readOrWrite",
        twisted.internet.asyncioreactor.AsyncioSelectorReactor._readOrWrite,
        "df202ad63297273d",
    ),
    (
        "chat/overrides/channel_layer.py replaces InMemoryChannelLayer.receive",
        channels.layers.InMemoryChannelLayer.receive,
        "e615f8ae40b60e12",
    ),
    (
        "chat/sockets/base.py's send falls back to AsyncWebsocketConsumer.send",
        channels.generic.websocket.AsyncWebsocketConsumer.send,
        "52ce6c1290fea217",
    ),
    (
        "chat/overrides/ws_send.py recognizes the send Server.create_application gives",
        daphne.server.Server.create_application,
        "f1e300b4ecf636c8",
    ),
    (
        "chat/overrides/ws_send.py does what Server.handle_reply checks",
        daphne.server.Server.handle_reply,
        "9d9dbaea6de0657a",
    ),
    (
        "chat/overrides/ws_send.py replaces WebSocketProtocol.handle_reply for text",
        daphne.ws_protocol.WebSocketProtocol.handle_reply,
        "5331423b1cf2016a",
    ),
    (
        "chat/overrides/ws_send.py replaces WebSocketProtocol.serverSend for text",
        daphne.ws_protocol.WebSocketProtocol.serverSend,
        "345f21330d2a18ce",
    ),
    (
        "chat/overrides/ws_send.py replaces Autobahn's sendMessage for a plain text frame",
        autobahn.websocket.protocol.WebSocketProtocol.sendMessage,
        "048d6bcf0d712309",
    ),
    (
        "chat/overrides/ws_send.py writes the frame Autobahn's sendFrame builds",
        autobahn.websocket.protocol.WebSocketProtocol.sendFrame,
        "89cc8b024c413aa0",
    ),
    (
        "chat/overrides/ws_send.py writes as Autobahn's sendData does without a send queue",
        autobahn.websocket.protocol.WebSocketProtocol.sendData,
        "5dcca425b048b07e",
    ),
    (
        "chat/overrides/llama.py calls Llama.eval once per n_batch tokens",
        llama_cpp.Llama.eval,
        "01b45d258b6688c7",
    ),
]


def fingerprint(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("what", "function", "pinned"), PINNED, ids=[p[0] for p in PINNED])
def test_upstream_code_is_what_the_override_was_written_against(what, function, pinned):
    assert fingerprint(function) == pinned, (
        f"{what}: the library's code changed (fingerprint {fingerprint(function)}); re-check the "
        "override against it, then update PINNED"
    )


def test_the_hooks_the_overrides_rely_on_still_exist():
    """The names the overrides call into: a rename upstream must fail here, not at run time."""
    assert callable(channels.consumer.get_handler_name)
    layer = channels.layers.InMemoryChannelLayer()
    assert isinstance(layer.channels, dict) and isinstance(layer.groups, dict)
    assert layer.get_capacity("x") >= 1 and layer.expiry > 0
    signature = inspect.signature(llama_cpp.Llama.generate)
    assert list(signature.parameters)[:2] == ["self", "tokens"]
    assert (
        "parsePOSTFormSubmission" in inspect.signature(twisted.web.http.Request.__init__).parameters
    )
    assert daphne_override._UPSTREAM.__name__ == "WebRequest"
    reactor = twisted.internet.asyncioreactor.AsyncioSelectorReactor
    assert {"_writers", "_asyncioEventloop"} <= set(reactor.__init__.__code__.co_names)
    assert hasattr(twisted.internet.abstract, "_dataMustBeBytes")
