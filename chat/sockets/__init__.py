"""The WebSocket transports: one base (chat.sockets.base) and one module per protocol.

- ``api``: the JSON protocol for API clients (``/ws`` and ``/``)
- ``webapp``: the web app's htmx socket (``/ws/ui``)

No socket module imports another's internals; what they share is in ``base``.
"""
