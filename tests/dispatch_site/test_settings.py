"""Settings come from the environment: each case imports them in a fresh interpreter."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

from tests.servers import REPO_ROOT, subprocess_env

SHOW_SETTINGS = """
import json
from django.conf import settings
print(json.dumps({
    "database": settings.DATABASES["default"],
    "layer": settings.CHANNEL_LAYERS["default"],
    "secret_key": settings.SECRET_KEY,
    "allowed_hosts": settings.ALLOWED_HOSTS,
}, default=str))
"""


def _settings(var_dir, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=REPO_ROOT,
        env=subprocess_env(DISPATCH_VAR_DIR=str(var_dir), **env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_defaults_are_sqlite_under_the_var_dir_and_the_in_memory_layer(tmp_path):
    var_dir = tmp_path / "var"  # does not exist yet: settings create it

    shown = _settings(var_dir)

    assert shown["database"]["ENGINE"] == "django.db.backends.sqlite3"
    assert shown["database"]["NAME"] == str(var_dir / "dispatch.sqlite3")
    assert shown["layer"]["BACKEND"] == "chat.overrides.channel_layer.InMemoryChannelLayer"
    assert shown["allowed_hosts"] == ["127.0.0.1", "localhost"]
    assert var_dir.is_dir()


def test_database_url_selects_postgresql(tmp_path):
    shown = _settings(tmp_path, DATABASE_URL="postgresql://dsp:s3cret@db.internal:6543/dispatch")

    database = shown["database"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == (
        "db.internal",
        6543,
        "dispatch",
    )
    assert (database["USER"], database["PASSWORD"]) == ("dsp", "s3cret")
    assert shown["layer"]["BACKEND"] == "chat.overrides.channel_layer.InMemoryChannelLayer"


def test_redis_url_selects_the_redis_channel_layer(tmp_path):
    shown = _settings(tmp_path, REDIS_URL="redis://cache.internal:6380/2")

    assert shown["layer"]["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert shown["layer"]["CONFIG"]["hosts"] == ["redis://cache.internal:6380/2"]
    assert shown["database"]["ENGINE"] == "django.db.backends.sqlite3"


def test_secret_key_is_generated_once_and_kept_in_the_var_dir(tmp_path):
    first = _settings(tmp_path / "a")["secret_key"]
    again = _settings(tmp_path / "a")["secret_key"]
    elsewhere = _settings(tmp_path / "b")["secret_key"]

    key_file = tmp_path / "a" / "secret_key"
    assert first == again == key_file.read_text().strip()
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert elsewhere != first


def test_secret_key_from_the_environment_wins_and_writes_nothing(tmp_path):
    shown = _settings(tmp_path, SECRET_KEY="from-the-environment")

    assert shown["secret_key"] == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def test_allowed_hosts_is_a_comma_separated_list(tmp_path):
    shown = _settings(tmp_path, ALLOWED_HOSTS=" chat.example.org, .example.net,,")

    assert shown["allowed_hosts"] == ["chat.example.org", ".example.net"]


SHOW_PROMETHEUS = """
import json
from django.conf import settings
print(json.dumps({
    "token": settings.DISPATCH_PROMETHEUS_TOKEN,
    "allow": [str(n) for n in settings.DISPATCH_PROMETHEUS_ALLOW],
}))
"""


def test_prometheus_access_is_a_token_and_a_list_of_addresses_or_networks(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SHOW_PROMETHEUS],
        cwd=REPO_ROOT,
        env=subprocess_env(
            DISPATCH_VAR_DIR=str(tmp_path),
            DISPATCH_PROMETHEUS_TOKEN=" t0ken ",
            DISPATCH_PROMETHEUS_ALLOW="10.0.0.0/8, 127.0.0.1 ,, ::1, 192.168.1.7/24",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "token": "t0ken",
        "allow": ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "192.168.1.0/24"],
    }


def test_a_bad_prometheus_address_stops_start_up(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=subprocess_env(DISPATCH_VAR_DIR=str(tmp_path), DISPATCH_PROMETHEUS_ALLOW="10.0.0.0/33"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "DISPATCH_PROMETHEUS_ALLOW: '10.0.0.0/33' is not an address or a network" in done.stderr
