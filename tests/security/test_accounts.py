"""Web login and logout (CSRF enforced) and API tokens from ``manage.py dispatch_token``."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from chat.auth import LAST_USED_RESOLUTION, token_digest
from chat.models import ApiToken

pytestmark = pytest.mark.django_db

PASSWORD = "pw-alice-1234"


@pytest.fixture
def user(user):
    """Alice, with a password to log in with."""
    user.set_password(PASSWORD)
    user.save()
    return user


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def login_form_token(client: Client) -> str:
    page = client.get("/login/")
    assert page.status_code == 200
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert match, "the login form carries a CSRF token"
    return match[1]


def test_login_with_password_and_csrf_token(user):
    client = csrf_client()
    token = login_form_token(client)
    response = client.post(
        "/login/",
        {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_without_csrf_token_is_refused(user):
    client = csrf_client()
    client.get("/login/")
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_wrong_password_shows_the_form_again(user):
    client = csrf_client()
    token = login_form_token(client)
    response = client.post(
        "/login/", {"username": "alice", "password": "nope", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert 'role="alert"' in response.content.decode()


def test_logout_is_post_only_and_needs_csrf(user):
    client = csrf_client()
    token = login_form_token(client)
    client.force_login(user)
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 403  # no CSRF token
    assert "_auth_user_id" in client.session
    response = client.post("/logout/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session


def test_session_calls_to_the_api_need_the_csrf_token(user):
    client = csrf_client()
    token = login_form_token(client)
    client.force_login(user)
    assert client.get("/conversations").status_code == 200
    refused = client.put(
        "/conversations/c1/title", '{"title": "x"}', content_type="application/json"
    )
    assert refused.status_code == 403
    accepted = client.put(
        "/conversations/c1/title",
        '{"title": "x"}',
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert accepted.status_code == 200, accepted.content


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/conversations/c1/stop"),
        ("put", "/conversations/c1/title"),
        ("delete", "/conversations/c1/queue/m1"),
        ("post", "/chat"),
    ],
)
def test_unsafe_calls_without_a_login_are_401_not_a_csrf_403(method, path, token):
    """Without a session there is nothing for CSRF to protect: the answer is the API's 401,
    for no credentials, a refused token and a stale session cookie alike."""
    body = '{"title": "x", "message": "x"}'
    for headers, cookie in (
        ({}, None),
        ({"Authorization": f"Bearer {token}x"}, None),
        ({}, "not-a-session"),
    ):
        client = csrf_client()
        if cookie:
            client.cookies["sessionid"] = cookie
        response = getattr(client, method)(
            path, body, content_type="application/json", headers=headers
        )
        assert response.status_code == 401, (headers, cookie, response.content)
        assert response.json() == {
            "error": "authentication required: log in or send Authorization: Bearer <token>"
        }


def test_bearer_calls_need_no_csrf_token(user, token):
    client = csrf_client()
    client.force_login(user)  # a session cookie too, as a browser on the site would send
    response = client.put(
        "/conversations/c1/title",
        '{"title": "x"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.content


def test_dispatch_token_prints_a_working_token_on_its_last_line(user):
    out = io.StringIO()
    call_command("dispatch_token", "alice", "--name", "laptop", stdout=out, stderr=io.StringIO())
    token = out.getvalue().strip().splitlines()[-1]
    row = ApiToken.objects.get(user=user)
    assert row.name == "laptop"
    # Only the digest is stored: the token itself is nowhere in the row.
    assert row.digest == token_digest(token)
    assert token not in {row.digest, row.prefix, row.name}
    client = Client(headers={"Authorization": f"Bearer {token}"})
    assert client.get("/conversations").status_code == 200


def test_dispatch_token_for_an_unknown_user_fails():
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("dispatch_token", "nobody", stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiToken.objects.exists()


def test_a_revoked_token_is_refused(api):
    assert api.get("/conversations").status_code == 200
    ApiToken.objects.update(revoked=True)
    response = api.get("/conversations")
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


def test_a_tokens_last_use_is_recorded_to_the_minute(api, token):
    assert ApiToken.objects.get().last_used_at is None
    assert api.get("/conversations").status_code == 200
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    assert api.get("/conversations").status_code == 200
    assert ApiToken.objects.get().last_used_at == first  # a minute has not passed: no write
    ApiToken.objects.update(last_used_at=first - LAST_USED_RESOLUTION)
    assert api.get("/conversations").status_code == 200
    assert ApiToken.objects.get().last_used_at > first


def test_tokens_are_revoked_in_the_admin_which_never_shows_the_digest(
    api, token, django_user_model
):
    staff = django_user_model.objects.create_superuser("root", password="pw-root-1234")
    admin = Client()
    admin.force_login(staff)
    row = ApiToken.objects.get()
    page = admin.get(f"/admin/chat/apitoken/{row.pk}/change/")
    assert page.status_code == 200
    assert row.digest not in page.content.decode()
    assert token not in page.content.decode()
    response = admin.post(
        "/admin/chat/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}
    )
    assert response.status_code == 302
    assert api.get("/conversations").status_code == 401
