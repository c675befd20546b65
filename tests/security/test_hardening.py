"""Production settings: ``check --deploy`` is clean; HTTPS switches; secrets stay out of logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from tests.security.conftest import SCRIPTED_API_KEY, run_turn
from tests.servers import REPO_ROOT, subprocess_env

SUBPROCESS_TIMEOUT = 120  # a bound, so a stuck interpreter fails the test instead of hanging

# The production environment docs/security.md documents.
PRODUCTION = {
    "DISPATCH_HTTPS": "1",
    "DISPATCH_BEHIND_PROXY": "1",
    "SECRET_KEY": "k" * 20 + "-production-secret-key-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": "dispatch.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://dispatch.example.com",
}


def deploy_check(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=subprocess_env(DISPATCH_VAR_DIR=str(tmp_path), DEBUG="0", **env),
        capture_output=True,
        text=True,
        check=False,
        timeout=SUBPROCESS_TIMEOUT,
    )


def test_check_deploy_passes_with_the_production_settings(tmp_path):
    done = deploy_check(tmp_path, **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_check_deploy_flags_a_plain_http_setup(tmp_path):
    done = deploy_check(tmp_path, **(PRODUCTION | {"DISPATCH_HTTPS": "0"}))
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr


def settings_of(tmp_path, **env: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n, None) for n in ("
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', "
        "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
        "'SECURE_PROXY_SSL_HEADER', 'DEBUG')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=subprocess_env(DISPATCH_VAR_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        check=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_https_settings_follow_the_environment(tmp_path):
    assert settings_of(tmp_path) == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "DEBUG": False,
    }
    assert settings_of(
        tmp_path,
        DISPATCH_HTTPS="1",
        DISPATCH_SSL_REDIRECT="0",
        DISPATCH_HSTS_SECONDS="600",
        DISPATCH_HSTS_PRELOAD="0",
        DISPATCH_BEHIND_PROXY="1",
    ) == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "DEBUG": False,
    }


@pytest.mark.django_db(transaction=True)
async def test_provider_api_keys_and_tokens_are_never_logged(caplog, scripted, token):
    caplog.set_level(logging.DEBUG)
    await run_turn(scripted, token, "c1", "hello", "hi there")
    sent = scripted.requests[0].headers
    assert sent["Authorization"] == f"Bearer {SCRIPTED_API_KEY}"  # the key was in use
    assert caplog.records, "the turn logged something at DEBUG"
    assert SCRIPTED_API_KEY not in caplog.text
    assert token not in caplog.text
