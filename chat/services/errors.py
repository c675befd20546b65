"""The business layer's errors; transports map them to 4xx answers."""


class Conflict(Exception):
    """The operation clashes with the conversation's state (e.g. a turn is running)."""


class InvalidInput(ValueError):
    """Bad input from a client (HTTP 400 / ``chat.error``)."""
