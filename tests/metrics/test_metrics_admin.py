"""The admin shows TurnMetrics/StepMetrics read-only: only metrics.services writes them."""

import pytest
from django.test import Client

from metrics.models import StepMetrics, TurnMetrics
from tests.metrics.conftest import turn_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(django_user_model):
    admin = django_user_model.objects.create_superuser(username="root", email="r@example.com")
    client = Client()
    client.force_login(admin)
    return client


def test_changelist_and_filters(admin_browser, sealed):
    sealed(turn_metrics(model="local/qwen", output_tokens=1234))
    sealed(turn_metrics(model="openai/gpt-4o", finishReason="length"))
    html = admin_browser.get("/admin/metrics/turnmetrics/").content.decode()
    assert "local/qwen" in html and "openai/gpt-4o" in html
    assert "50 / 1,234" in html  # tokens (in / out)
    assert "1.2s" in html  # duration: 1000 ms decode + 200
    filtered = admin_browser.get("/admin/metrics/turnmetrics/", {"finish_reason": "length"})
    assert filtered.content.decode().count('class="field-model"') == 1


def test_detail_is_read_only_with_its_steps(admin_browser, sealed):
    turn_id = sealed(turn_metrics())
    row = TurnMetrics.objects.get(turn_id=turn_id)
    response = admin_browser.get(f"/admin/metrics/turnmetrics/{row.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"{turn_id}#0" in html  # the step inline
    assert 'name="_save"' not in html
    step = StepMetrics.objects.get(turn_metrics=row)
    assert admin_browser.get(f"/admin/metrics/stepmetrics/{step.pk}/change/").status_code == 200


@pytest.mark.parametrize("model", ["turnmetrics", "stepmetrics"])
def test_no_add_change_or_delete(admin_browser, sealed, model):
    sealed(turn_metrics())
    pk = (TurnMetrics if model == "turnmetrics" else StepMetrics).objects.get().pk
    assert admin_browser.get(f"/admin/metrics/{model}/add/").status_code == 403
    assert admin_browser.post(f"/admin/metrics/{model}/{pk}/change/", {}).status_code == 403
    assert admin_browser.get(f"/admin/metrics/{model}/{pk}/delete/").status_code == 403
