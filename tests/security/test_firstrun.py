"""First run: an admin without a password and a single-use, expiring login link."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from chat import auth

pytestmark = pytest.mark.django_db

LINK = re.compile(r"(https?://[^/\s]+)(/login/once/[^\s]+/)")


def firstrun(*args: str) -> str:
    out = io.StringIO()
    call_command("dispatch_firstrun", *args, stdout=out)
    return out.getvalue()


def link_in(output: str) -> tuple[str, str]:
    match = LINK.search(output)
    assert match, output
    return match[1], match[2]


def logged_in_as(client: Client):
    return client.session.get("_auth_user_id")


def test_first_run_creates_an_admin_without_password_and_prints_a_link(monkeypatch):
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    output = firstrun()
    admin = get_user_model().objects.get()
    assert (admin.username, admin.is_superuser, admin.is_staff) == ("admin", True, True)
    assert not admin.has_usable_password()
    origin, path = link_in(output)
    assert origin == "http://127.0.0.1:8000"

    client = Client()
    response = client.get(path)
    assert response.status_code == 302
    assert logged_in_as(client) == str(admin.pk)
    # Spent: a second visit logs nobody in.
    again = Client()
    assert again.get(path).status_code == 400
    assert logged_in_as(again) is None


def test_an_existing_admin_gets_no_secret_unless_asked(monkeypatch):
    get_user_model().objects.create_superuser("root", password=None)
    output = firstrun()
    assert "/login/once/" not in output
    assert "dispatch_firstrun --link" in output
    assert get_user_model().objects.count() == 1

    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9123")
    origin, path = link_in(firstrun("--link"))
    assert origin == "http://127.0.0.1:9123"
    client = Client()
    client.get(path)
    assert logged_in_as(client) == str(get_user_model().objects.get().pk)


def test_a_new_link_is_single_use_after_an_earlier_login():
    firstrun()
    admin = get_user_model().objects.get()
    first = Client()
    first.force_login(admin)  # last_login is set: the new link must still be spent by its use
    _, path = link_in(firstrun("--link"))
    assert Client().get(path).status_code == 302
    assert Client().get(path).status_code == 400


def test_an_expired_link_is_refused(monkeypatch):
    firstrun()
    admin = get_user_model().objects.get()
    issued = datetime.now() - auth.LOGIN_LINK_MAX_AGE - timedelta(minutes=1)
    monkeypatch.setattr(auth.login_link_tokens, "_now", lambda: issued)
    token = auth.login_link_token_create(user=admin)
    monkeypatch.undo()
    client = Client()
    assert client.get(f"/login/once/{token}/").status_code == 400
    assert logged_in_as(client) is None


@pytest.mark.parametrize("token", ["garbage", "1-x-y", "zzzzzzzzzzzzzzzzzzzz-1-2", "-"])
def test_malformed_links_are_refused(token):
    firstrun()
    client = Client()
    assert client.get(f"/login/once/{token}/").status_code == 400
    assert logged_in_as(client) is None


def test_a_link_of_a_deactivated_admin_is_refused():
    _, path = link_in(firstrun())
    get_user_model().objects.update(is_active=False)
    assert Client().get(path).status_code == 400


def test_a_regular_user_named_admin_is_not_promoted():
    get_user_model().objects.create_user("admin", password="pw-admin-1234")
    firstrun()
    superuser = get_user_model().objects.get(is_superuser=True)
    assert superuser.username == "admin-2"
    assert not get_user_model().objects.get(username="admin").is_superuser
