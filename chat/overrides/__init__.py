"""Every place Dispatch replaces a library's internals, for speed or for a hook it lacks.

Each module names what it replaces, why, and the library version it was written against;
tests/test_overrides.py fails loudly when that library's code changes, so an upgrade is
checked against the override instead of silently drifting from it:

- ``consumer``: Channels' ``AsyncConsumer.__call__`` and ``dispatch`` (channels 4.3) — one
  inbox instead of a task per message, no database hop per message, and frames sent past the
  session middleware's ``send``, which never saves for a socket.
- ``channel_layer``: Channels' ``InMemoryChannelLayer`` (channels 4.3) — constant cost per
  send whatever the number of sockets, no queue built per send or receive.
- ``ws_send``: Daphne's reply path (daphne 4.2) and Autobahn's ``sendMessage`` (autobahn 26)
  for a plain text frame — written by the consumer to the connection's transport.
- ``llama``: llama-cpp-python's ``Llama.generate`` and ``Llama.eval`` (0.3) — a hook between
  sampled tokens, to count them and to stop a generation within one token, and between prompt
  batches, to report how far the prompt is read and to stop there.
- ``access_log``: Daphne's CLI access log (daphne 4.2) — a ``token`` query parameter's value
  never reaches the log.
- ``daphne``: Daphne's ``WebRequest`` (daphne 4.2, Twisted 26) — without Twisted's parsing of
  multipart bodies, which Daphne never uses (uploads were parsed twice, once on the reactor).
- ``twisted_write``: Twisted's ``FileDescriptor.write`` for the connections Daphne accepts
  (Twisted 26, asyncio reactor) — a write is flushed at the end of the loop's turn instead of
  after an epoll round trip per frame.
- ``_Lines`` in chat/routes/ndjson.py, outside this package because it subclasses Django's
  ``StreamingHttpResponse`` (Django 5.2) — an NDJSON response's lines go to the ASGI handler
  as they come, without two more asynchronous generators per line.

Nothing here imports Django at module level; ``llama`` imports llama_cpp (only the embedded
model's provider imports it); ``daphne`` is installed by dispatch_site/asgi.py, ``access_log``
and ``twisted_write`` by dispatch_site/serve.py.
"""
