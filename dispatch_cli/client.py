"""The HTTP API as the CLI sees it: one method per route, every failure a ``CliError``.

Status codes map to exit codes here and only here: 401/403 → AUTH, 404 and an unknown model
(the server's 400 "unknown model …") → NOT_FOUND, any other 4xx → USAGE (the input was
refused), 409/429/5xx → FAILED, no connection → UNREACHABLE.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from dispatch_cli import config
from dispatch_cli.errors import AUTH, NOT_FOUND, UNREACHABLE, USAGE, CliError

TIMEOUT = httpx.Timeout(30.0)
# A turn's stream may be silent for as long as a tool or a slow model runs.
STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)


class Client:
    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        headers = {}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self._http = httpx.Client(base_url=settings.url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ routes

    def models(self) -> dict:
        return self._json("GET", "/models")

    def history(self, conversation_id: str) -> dict:
        return self._json("GET", f"/conversations/{conversation_id}")

    def metrics(self, conversation_id: str) -> dict:
        return self._json("GET", f"/conversations/{conversation_id}/metrics")

    def stop(self, conversation_id: str) -> dict:
        return self._json("POST", f"/conversations/{conversation_id}/stop")

    def export(self, conversation_id: str, fmt: str) -> str:
        """The conversation exported by the server (``md`` or ``json``), as text."""
        path = f"/conversations/{conversation_id}/export"
        response = self._send("GET", path, params={"format": fmt})
        if response.status_code == 404 and _error_message(response) is None:
            # A 404 without the API's {"error"} body comes from the URL router: no such route.
            raise CliError(
                f"the server at {self.settings.url} cannot export conversations "
                f"(no GET {path} route): it needs a newer Dispatch",
                NOT_FOUND,
            )
        self._check(response)
        return response.text

    @contextmanager
    def chat(self, body: dict[str, Any]) -> Iterator[Iterator[dict]]:
        """``POST /chat``: the turn's AgentEvents as they arrive."""
        request = self._http.build_request("POST", "/chat", json=body, timeout=STREAM_TIMEOUT)
        response = self._transport(lambda: self._http.send(request, stream=True))
        try:
            if response.status_code != 200:
                self._transport(response.read)
                self._check(response)
            yield self._events(response)
        finally:
            response.close()

    # ------------------------------------------------------------ plumbing

    def _events(self, response: httpx.Response) -> Iterator[dict]:
        lines = response.iter_lines()
        while True:
            line = self._transport(lambda: next(lines, None))
            if line is None:
                return
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise CliError(f"the server sent a line that is not JSON: {line[:80]}") from None
            if isinstance(event, dict):
                yield event

    def _json(self, method: str, path: str) -> dict:
        response = self._send(method, path)
        self._check(response)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise CliError(f"{self.settings.url}{path} did not answer with JSON: is it Dispatch?")
        return data

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._transport(lambda: self._http.request(method, path, **kwargs))

    def _transport(self, call):
        try:
            return call()
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise CliError(
                f"cannot connect to {self.settings.url} ({_reason(error)}): is the server running?",
                UNREACHABLE,
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"{self.settings.url} did not answer in time") from None
        except httpx.TransportError as error:
            raise CliError(
                f"lost the connection to {self.settings.url} ({_reason(error)})"
            ) from None

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = _error_message(response)
        said = message or f"HTTP {status} {response.reason_phrase}"
        if status in (401, 403):
            if not self.settings.token:
                raise CliError(
                    f"the server wants a token ({said}): pass --token, set DISPATCH_TOKEN or "
                    f'put token = "…" in {config.config_path()} '
                    "(manage.py dispatch_token <username> makes one)",
                    AUTH,
                )
            raise CliError(
                f"the server refused the token from {self.settings.token_source} "
                f"(HTTP {status}): it may be mistyped or revoked",
                AUTH,
            )
        if status == 404:
            if message is None:
                raise CliError(
                    f"{self.settings.url} has no route {response.request.url.path}: "
                    "is it a Dispatch server?",
                    NOT_FOUND,
                )
            raise CliError(message, NOT_FOUND)
        if status == 400 and said.startswith("unknown model"):
            raise CliError(f"{said} (dispatch models lists them)", NOT_FOUND)
        if 400 <= status < 500 and status not in (409, 429):
            raise CliError(said, USAGE)
        if status >= 500:
            raise CliError(f"server error {status}: {said}")
        raise CliError(said)


def _error_message(response: httpx.Response) -> str | None:
    """The API's ``{"error": "…"}`` message, or None when the body is something else."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) and error else None


def _reason(error: Exception) -> str:
    """``[Errno 111] Connection refused`` → ``connection refused``."""
    text = str(error) or type(error).__name__
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return text[:1].lower() + text[1:]
