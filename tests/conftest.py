"""Shared fixtures: real PostgreSQL/Redis servers for the session, users and API clients."""

from __future__ import annotations

import asgiref.sync
import pytest
from django.test import Client

from tests.servers import PostgresServer, RedisServer, manage


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL cluster for the whole session, started on first use."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """DATABASE_URL of the session's PostgreSQL maintenance database (empty, unmigrated)."""
    return postgres_server.url


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server) -> str:
    """DATABASE_URL of a PostgreSQL database migrated with ``manage.py migrate``.

    Shared by the session: tests using it work in conversations of their own.
    """
    url = postgres_server.database_create("dispatch")
    manage(["migrate", "--noinput"], DATABASE_URL=url)
    return url


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the whole session; tests may ``restart()`` it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def _attachments_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("attachments")


@pytest.fixture(autouse=True)
def _attachments_in_a_temporary_directory(_attachments_dir, settings):
    """Attachments uploaded in the test process go to a temporary directory, never var/."""
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(_attachments_dir)},
        },
    }


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob")


@pytest.fixture
def token(user) -> str:
    from chat.auth import api_token_create

    return api_token_create(user=user)


@pytest.fixture
def api(token) -> Client:
    """A test client that authenticates as ``user`` with ``Authorization: Bearer <token>``."""
    return Client(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def thread_hops(monkeypatch) -> list[str]:
    """What each round trip from the event loop to a thread (``sync_to_async``) ran, in
    order, while the test runs."""
    called: list[str] = []
    upstream = asgiref.sync.SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        called.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await upstream(self, *args, **kwargs)

    monkeypatch.setattr(asgiref.sync.SyncToAsync, "__call__", counted)
    return called
