"""Response headers: the Content-Security-Policy on every page, and the other security headers.

tests/web/test_csp.py runs the web app in Chromium under this policy and asserts the browser
reports no violation.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from django.test import Client

from tests.servers import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db

TEMPLATES = REPO_ROOT / "templates"
# Inline code the policy refuses: a <script> without src (JSON data blocks are not run), a
# <style> element, a style attribute, an event-handler attribute, a javascript: URL.
INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|"
    r"javascript:|\shx-on",
    re.IGNORECASE,
)


def policy(response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy as {directive: [sources]}."""
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


PAGES = ["/login/", "/login/once/1-x-y/", "/new", "/c/some-conversation", "/metrics/", "/admin/"]


@pytest.mark.parametrize("path", PAGES + ["/api/docs"])
def test_every_page_carries_the_policy(django_user_model, path):
    staff = django_user_model.objects.create_superuser("root", password="pw-root-1234")
    client = Client()
    client.force_login(staff)
    response = client.get(path, follow=True)
    assert response.status_code in {200, 400}
    assert response["Content-Type"].startswith("text/html")
    assert policy(response) == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],  # + a nonce on a page that uses one
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", "ws://testserver"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }


@pytest.mark.parametrize("path", PAGES)
def test_pages_contain_no_inline_code(browser, path):
    response = browser.get(path, follow=True)
    assert response.status_code in {200, 400}
    html = response.content.decode()
    assert "<html" in html
    assert INLINE_CODE.findall(html) == []


def test_templates_contain_no_inline_code():
    found = {
        str(path.relative_to(TEMPLATES)): INLINE_CODE.findall(path.read_text())
        for path in TEMPLATES.rglob("*.html")
    }
    assert len(found) > 10
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_a_nonce_used_by_a_page_is_in_its_policy(rf):
    from django.http import HttpResponse

    from dispatch_site.headers import SecurityHeadersMiddleware

    def view(request):
        return HttpResponse(f'<script nonce="{request.csp_nonce}">1</script>')

    request = rf.get("/")
    response = SecurityHeadersMiddleware(view)(request)
    nonce = re.search(r'nonce="([^"]+)"', response.content.decode())[1]
    assert policy(response)["script-src"] == ["'self'", f"'nonce-{nonce}'"]


def test_over_https_the_socket_origin_is_wss(browser, settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    response = browser.get("/login/", secure=True, headers={"Host": "chat.example.com"})
    assert policy(response)["connect-src"] == ["'self'", "wss://chat.example.com"]


def test_the_other_security_headers(browser, settings):
    response = browser.get("/new", follow=True)
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Permissions-Policy"].startswith("accelerometer=(), camera=()")
    assert "Strict-Transport-Security" not in response  # plain HTTP: no HSTS
    settings.SECURE_HSTS_SECONDS = 31536000  # what DISPATCH_HTTPS=1 sets (test_hardening)
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    secure = Client().get("/login/", secure=True)  # a new client: middleware reads settings
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_api_answers_carry_the_headers_too(api):
    response = api.get("/conversations")
    assert response.status_code == 200
    assert policy(response)["default-src"] == ["'self'"]
    assert response["X-Content-Type-Options"] == "nosniff"


def csp_setting(tmp_path, **env: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps(s.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=subprocess_env(DISPATCH_VAR_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_image_origins_extend_img_src(tmp_path):
    assert csp_setting(tmp_path) == ["'self'", "data:"]
    assert csp_setting(
        tmp_path, DISPATCH_IMAGE_ORIGINS="https://images.example.com, HTTPS://cdn.example.net/"
    ) == ["'self'", "data:", "https://images.example.com", "https://cdn.example.net"]
