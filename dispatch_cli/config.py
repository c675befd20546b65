"""Where the server is and who we are: flags > environment > a small TOML file > defaults.

The file is ``$XDG_CONFIG_HOME/dispatch/cli.toml`` (``~/.config/dispatch/cli.toml`` when the
variable is unset or empty) and may set ``url`` and ``token``::

    url = "https://dispatch.example.org"
    token = "…"            # from: manage.py dispatch_token <username>

A missing file is fine; a malformed one, an unknown key or a value that is not a string is a
usage error naming the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dispatch_cli.errors import USAGE, CliError

DEFAULT_URL = "http://127.0.0.1:8000"
KEYS = ("url", "token")


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    token_source: str = ""  # where the token came from, for error messages


def config_path(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dispatch" / "cli.toml"


def read_file(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise CliError(f"{path}: {error}", USAGE) from error
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}", USAGE) from error
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise CliError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})", USAGE)
    for key, value in data.items():
        if not isinstance(value, str):
            raise CliError(f"{path}: {key} must be a string", USAGE)
    return data


def resolve(
    url: str | None, token: str | None, environ: dict[str, str] | os._Environ[str] = os.environ
) -> Settings:
    """The settings from the flags' values (None when not given), the environment and the file."""
    env_url = environ.get("DISPATCH_URL") or None
    env_token = environ.get("DISPATCH_TOKEN") or None
    file: dict[str, str] = {}
    if url is None and env_url is None or token is None and env_token is None:
        file = read_file(config_path(environ))
    chosen_url = url or env_url or file.get("url") or DEFAULT_URL
    if not chosen_url.startswith(("http://", "https://")):
        raise CliError(f"server URL must start with http:// or https://: {chosen_url}", USAGE)
    if token:
        source = "--token"
    elif env_token:
        token, source = env_token, "DISPATCH_TOKEN"
    elif file.get("token"):
        token, source = file["token"], str(config_path(environ))
    else:
        token, source = None, ""
    return Settings(url=chosen_url.rstrip("/"), token=token, token_source=source)
