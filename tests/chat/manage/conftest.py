"""Fixtures of the conversation-management tests: the security tests' scripted model, users
and clients (a real SSE server on 127.0.0.1, the real database)."""

from tests.security.conftest import (  # noqa: F401 - fixtures, found by pytest here
    _empty_channel_layer,
    _fast_password_hashing,
    _fresh_rate_counters,
    other_token,
    scripted,
)
