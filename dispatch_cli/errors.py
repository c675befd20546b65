"""The CLI's exit codes and the one error type that carries them to ``main``."""

from __future__ import annotations

OK = 0
FAILED = 1  # the server failed, or the turn ended in an error
USAGE = 2  # bad arguments or input (argparse uses 2 too)
AUTH = 3  # the server refused the token (401/403)
NOT_FOUND = 4  # no such conversation, route or model
UNREACHABLE = 5  # no connection to the server
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, the shell's convention)


class CliError(Exception):
    """A failure to report on stderr as one line, and the process's exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
