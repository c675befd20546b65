"""The /metrics/ page: period selection, inline SVG charts, the period's turns."""

import datetime as dt
import re

import pytest
from django.test import Client, override_settings

from metrics.views import TURNS_PER_PAGE
from tests.metrics.conftest import turn_metrics

pytestmark = pytest.mark.django_db
MARCH_10 = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_login_required():
    response = Client().get("/metrics/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/metrics/")


def test_page_shows_models_charts_and_turns(browser, sealed, other_user):
    sealed(turn_metrics(model="a/fast", output_tokens=420, decode_ms=10_000), at=MARCH_10)
    sealed(
        turn_metrics(model="b/slow", output_tokens=75, decode_ms=10_000, finishReason="length"),
        at=MARCH_10 + dt.timedelta(days=1),
        conversation_id="conv-2",
    )
    sealed(turn_metrics(model="z/theirs"), owner=other_user, conversation_id="x", at=MARCH_10)
    response = browser.get("/metrics/", {"period": "week", "date": "2026-03-11"})
    assert response.status_code == 200
    html = response.content.decode()

    assert "Mon 9 Mar 2026 – Sun 15 Mar 2026" in html
    # The per-model table, fastest first, formatted per docs/protocol.md#8-web-app-socket.
    assert html.index("a/fast") < html.index("b/slow")
    assert "42 tok/s" in html and "7.5 tok/s" in html
    assert "z/theirs" not in html
    # Two inline SVG charts (tok/s and TTFT), one line per model with a point per day used.
    assert html.count(' role="img"') == 2  # the two charts (legend swatches are svg too)
    assert len(re.findall(r"<circle ", html)) == 4
    assert "a/fast · Tue 10 · 42 tok/s" in html
    assert "b/slow · Wed 11 · 120ms" in html
    # The turns table: newest first, linking to the conversation.
    assert html.index('href="/c/conv-2"') < html.index('href="/c/conv-1"')
    assert "length" in html
    assert "2 turns" in html


def test_other_periods_and_navigation(browser, sealed):
    sealed(turn_metrics(), at=MARCH_10)
    day = browser.get("/metrics/", {"period": "day", "date": "2026-03-10"}).content.decode()
    assert "12:00" in day and "1 turns" in day
    assert 'href="?period=day&amp;date=2026-03-09"' in day
    assert 'href="?period=day&amp;date=2026-03-11"' in day
    month = browser.get("/metrics/", {"period": "month", "date": "2026-02-01"}).content.decode()
    assert "No turns in this period." in month
    assert 'href="?period=month&amp;date=2026-03"' in month


def test_invalid_period_is_a_400_page(browser):
    response = browser.get("/metrics/", {"period": "year"})
    assert response.status_code == 400
    assert "period must be one of day, week, month" in response.content.decode()


def test_model_names_are_escaped(browser, sealed):
    sealed(turn_metrics(model="x/<b>bold</b>"), at=MARCH_10)
    html = browser.get("/metrics/", {"period": "day", "date": "2026-03-10"}).content.decode()
    assert "<b>bold</b>" not in html
    assert "x/&lt;b&gt;bold&lt;/b&gt;" in html


def test_turns_are_paginated(browser, sealed):
    for n in range(TURNS_PER_PAGE + 1):
        sealed(turn_metrics(output_tokens=1000 + n), at=MARCH_10 + dt.timedelta(seconds=n))
    query = {"period": "day", "date": "2026-03-10"}
    first = browser.get("/metrics/", query).content.decode()
    second = browser.get("/metrics/", {**query, "page": 2}).content.decode()
    assert first.count('href="/c/conv-1"') == TURNS_PER_PAGE
    assert second.count('href="/c/conv-1"') == 1
    assert "page 2 of 2" in second
    # Newest first: the oldest turn (50 in + 1,000 out) is the one left for page 2.
    assert ">1,050<" in second and ">1,050<" not in first
    assert ">1,100<" in first


@override_settings(TIME_ZONE="Europe/Berlin")
def test_buckets_are_local_hours(browser, sealed):
    sealed(turn_metrics(), at=dt.datetime(2026, 3, 9, 23, 30, tzinfo=dt.UTC))
    html = browser.get("/metrics/", {"period": "day", "date": "2026-03-10"}).content.decode()
    assert "local/qwen · 00:00 · 100 tok/s" in html
