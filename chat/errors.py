"""The domain errors: what a service refuses, and how every transport says it.

A service raises one of these with a message fit to show a user (never SQL, a traceback or
someone else's data). Each transport maps them the same way, from this table
(docs/protocol.md#9-errors): the JSON API answers ``status`` with ``{"error": message}``, the
JSON WebSocket sends ``chat.error`` (or ``error`` for surface ops), the web app's socket shows
the message in its notice, the admin shows it as an error message.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refused request. ``status`` is the HTTP status that says it."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """Bad input from a client; ``field`` names the input when there is one."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotAuthenticated(DomainError):
    status = 401


class NotFound(DomainError):
    """The object does not exist for this caller: someone else's reads the same."""

    status = 404

    @classmethod
    def conversation(cls, conversation_id: str) -> NotFound:
        return cls(f"conversation not found: {conversation_id}")

    @classmethod
    def attachment(cls, attachment_id: str) -> NotFound:
        return cls(f"attachment not found: {attachment_id}")


class Conflict(DomainError):
    """The request clashes with the object's state (e.g. a turn is already running)."""

    status = 409


class TooLarge(DomainError):
    status = 413


class RateLimited(DomainError):
    status = 429


class ModelFailed(DomainError):
    """The model failed at what was asked of it (a compaction got no summary): the request
    was good and nothing changed, but it could not be done. 422, not a 5xx: 5xx are
    Dispatch's own faults (a failing model is in-band in a turn, docs/protocol.md#9-errors)."""

    status = 422


class Unavailable(DomainError):
    """The server cannot do it right now: the database refuses writes, or this worker is
    shutting down (another one will take the request)."""

    status = 503
