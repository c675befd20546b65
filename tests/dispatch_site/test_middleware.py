"""The middleware chain runs in the request's thread in one go (dispatch_site/middleware.py),
not with a round trip between threads for every hook of every middleware."""

from __future__ import annotations

import pytest
from django.test import AsyncClient


def _hooks_sent_alone(hops: list[str]) -> list[str]:
    # process_view is Django's handler's own call, after the chain (one hop either way).
    return [hop for hop in hops if ".process_request" in hop or ".process_response" in hop]


@pytest.mark.django_db(transaction=True)
async def test_a_page_request_runs_the_middleware_chain_in_one_go(thread_hops):
    response = await AsyncClient().get("/login/")
    assert response.status_code == 200
    # Asynchronously, Session, Common, Csrf, Auth, Messages and XFrameOptions sent each of
    # their ten hooks to the thread on its own: 16 round trips for this page, now 6.
    assert _hooks_sent_alone(thread_hops) == []
    assert "convert_exception_to_response.<locals>.inner" in thread_hops  # the chain, once
    assert len(thread_hops) <= 6, thread_hops


@pytest.mark.django_db(transaction=True)
async def test_an_api_request_runs_the_middleware_chain_in_one_go(thread_hops):
    response = await AsyncClient().get("/models")  # an asynchronous view; refused unsigned
    assert response.status_code == 401
    assert _hooks_sent_alone(thread_hops) == []
    assert len(thread_hops) <= 5, thread_hops
