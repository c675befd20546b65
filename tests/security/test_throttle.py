"""Sign-in throttling (chat.throttle): passwords, login links and API tokens, per address and
per account name, refused before the credentials are looked at, with nothing to tell whether
an account exists."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import throttle
from chat.auth import login_link_token_create
from tests.security.conftest import socket

pytestmark = pytest.mark.django_db

PASSWORD = "pw-alice-1234"
THROTTLED = re.compile(r"Too many failed sign-in attempts; try again in \d+ minutes?\.")
API_THROTTLED = re.compile(r"too many failed sign-in attempts; try again in \d+ minutes?")


@pytest.fixture
def user(user):
    """Alice, with a password to log in with."""
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def limits(settings):
    """Small limits and a window that cannot roll over during a test (unless it says so)."""
    settings.DISPATCH_SIGNIN_WINDOW = 3600
    settings.DISPATCH_SIGNIN_ACCOUNT_LIMIT = 5
    settings.DISPATCH_SIGNIN_ADDRESS_LIMIT = 8
    return settings


def sign_in(username: str, password: str, address: str = "10.0.0.1", path: str = "/login/"):
    """One login form submission (with its CSRF token) from ``address``; the response and
    whether the client ended up logged in."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    form = client.get(path).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
    response = client.post(
        path, {"username": username, "password": password, "csrfmiddlewaretoken": token}
    )
    return response, "_auth_user_id" in client.session


def alerts(response) -> list[str]:
    return re.findall(r'role="alert">([^<]*)<', response.content.decode())


def test_thirty_wrong_passwords_then_the_right_one_is_refused(user, limits):
    """The issue's report: 30 wrong passwords in seconds, then the right one worked."""
    statuses = [sign_in("alice", f"wrong-{n}")[0].status_code for n in range(30)]
    assert statuses == [200] * 5 + [429] * 25
    response, logged_in = sign_in("alice", PASSWORD)
    assert response.status_code == 429
    assert not logged_in
    assert len(alerts(response)) == 1 and THROTTLED.fullmatch(alerts(response)[0])


def test_a_throttled_account_looks_the_same_whether_it_exists_or_not(user, limits):
    answers = {}
    for name, address in (("alice", "10.0.0.1"), ("nobody", "10.0.0.2")):
        wrong = [sign_in(name, "wrong", address)[0] for _ in range(6)]
        # Wrong passwords and the throttle answer alike for an existing and a missing account.
        answers[name] = [(r.status_code, alerts(r)) for r in wrong]
    assert answers["alice"] == answers["nobody"]
    assert [status for status, _ in answers["alice"]] == [200] * 5 + [429]


def test_the_account_budget_holds_across_addresses_and_letter_case(user, limits):
    for n in range(5):
        sign_in("Alice" if n % 2 else "alice", "wrong", address=f"10.0.1.{n}")
    response, logged_in = sign_in("alice", PASSWORD, address="10.0.2.1")
    assert (response.status_code, logged_in) == (429, False)


def test_the_address_budget_covers_every_account_name(user, limits):
    for n in range(8):  # a password spray: one try per name, all from one address
        assert sign_in(f"user{n}", "wrong")[0].status_code == 200
    response, logged_in = sign_in("alice", PASSWORD)
    assert (response.status_code, logged_in) == (429, False)
    # Alice herself, elsewhere, is not affected: her account made no failures.
    assert sign_in("alice", PASSWORD, address="10.9.9.9")[1]


def test_signing_in_forgets_the_accounts_failures_but_not_the_addresses(user, limits):
    for _ in range(4):
        sign_in("alice", "wrong", address="10.0.0.1")
    assert sign_in("alice", PASSWORD, address="10.0.0.2")[1]
    # The account's budget starts again.
    statuses = [sign_in("alice", "wrong", address="10.0.0.3")[0].status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_the_throttle_ends_with_its_window(user, limits, monkeypatch):
    now = 7200.0 + 60  # a minute into a window of an hour
    monkeypatch.setattr(throttle, "_now", lambda: now)
    for _ in range(5):
        sign_in("alice", "wrong")
    response, _ = sign_in("alice", PASSWORD)
    assert alerts(response) == ["Too many failed sign-in attempts; try again in 59 minutes."]
    now = 10800.0  # the next window
    assert sign_in("alice", PASSWORD)[1]


def test_a_zero_limit_turns_the_counter_off(user, limits):
    limits.DISPATCH_SIGNIN_ACCOUNT_LIMIT = 0
    limits.DISPATCH_SIGNIN_ADDRESS_LIMIT = 0
    for _ in range(12):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD)[1]


def test_the_admin_login_is_throttled_too(user, limits):
    user.is_staff = True
    user.save()
    for _ in range(5):
        sign_in("alice", "wrong", path="/admin/login/")
    assert not sign_in("alice", PASSWORD, path="/admin/login/")[1]
    # The admin's failures count for the web app's login page as well.
    assert sign_in("alice", PASSWORD)[0].status_code == 429


# ---------------------------------------------------------------- login links


def test_bad_login_links_are_throttled_per_address(user, limits):
    good = f"/login/once/{login_link_token_create(user=user)}/"
    bad = Client(REMOTE_ADDR="10.0.0.1")
    statuses = [bad.get(f"/login/once/1-abc-{n}/").status_code for n in range(9)]
    assert statuses == [400] * 8 + [429]
    refused = bad.get(good)
    assert refused.status_code == 429
    assert "_auth_user_id" not in bad.session
    assert THROTTLED.search(refused.content.decode())
    # The link itself was not spent: it still works from another address.
    elsewhere = Client(REMOTE_ADDR="10.0.0.2")
    assert elsewhere.get(good).status_code == 302
    assert elsewhere.session["_auth_user_id"] == str(user.pk)


# ---------------------------------------------------------------- API tokens


def test_bad_tokens_are_throttled_per_address_with_a_429(limits, token):
    def get(bearer: str, address: str = "10.0.0.1"):
        return Client(REMOTE_ADDR=address).get(
            "/conversations", headers={"Authorization": f"Bearer {bearer}"}
        )

    statuses = [get(f"dsp_wrong{n}").status_code for n in range(9)]
    assert statuses == [401] * 8 + [429]
    refused = get("dsp_wrong-again")
    assert refused.status_code == 429
    assert set(refused.json()) == {"error"}
    assert API_THROTTLED.fullmatch(refused.json()["error"])
    # A real token is never throttled: guessing one is hopeless, and a throttled address (a
    # shared NAT) must not lock out the clients that hold one.
    assert get(token).status_code == 200
    assert get("dsp_wrong-other", address="10.0.0.2").status_code == 401


def test_a_session_from_a_throttled_address_is_not_refused(limits, user):
    for n in range(8):
        Client(REMOTE_ADDR="10.0.0.1").get(
            "/conversations", headers={"Authorization": f"Bearer dsp_wrong{n}"}
        )
    client = Client(REMOTE_ADDR="10.0.0.1")
    client.force_login(user)
    assert client.get("/conversations").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_bad_socket_tokens_are_throttled_and_closed_with_4429(limits, token):
    limits.DISPATCH_BEHIND_PROXY = True  # the client's address comes from the proxy's header
    behind_proxy = [(b"x-forwarded-for", b"203.0.113.9")]
    for n in range(8):
        communicator, connected, _ = await socket(token=f"dsp_wrong{n}", headers=behind_proxy)
        assert connected
        assert (await communicator.receive_output(timeout=10))["code"] == 4401
        await communicator.disconnect()
    communicator, connected, _ = await socket(token="dsp_wrong-again", headers=behind_proxy)
    assert connected
    assert await communicator.receive_output(timeout=10) == {
        "type": "websocket.close",
        "code": 4429,
    }
    # HTTP from that address is throttled by the same count; other addresses are not.
    for address, status in (("203.0.113.9", 429), ("203.0.113.10", 401)):
        response = await database_sync_to_async(Client().get)(
            "/conversations",
            headers={"Authorization": "Bearer dsp_wrong-http", "X-Forwarded-For": address},
        )
        assert response.status_code == status
    # The real token still opens a socket from the throttled address.
    communicator, connected, _ = await socket(token=token, headers=behind_proxy)
    assert (await communicator.receive_json_from(timeout=10))["type"] == "catalog"
    await communicator.disconnect()


# ---------------------------------------------------------------- whose address


@pytest.mark.parametrize(
    ("behind_proxy", "remote", "forwarded", "expected"),
    [
        (False, "203.0.113.7", "198.51.100.1", "203.0.113.7"),  # no proxy: header ignored
        (True, "127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the proxy's entry
        (True, "127.0.0.1", None, "127.0.0.1"),
        (False, "2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),  # IPv6 per /64
        (False, "::ffff:203.0.113.7", None, "203.0.113.7"),
        (False, None, None, "unknown"),
    ],
)
def test_the_address_attempts_count_under(settings, behind_proxy, remote, forwarded, expected):
    settings.DISPATCH_BEHIND_PROXY = behind_proxy
    assert throttle.client_address(remote, forwarded) == expected
