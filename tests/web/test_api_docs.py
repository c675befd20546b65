"""The API documentation works: /api/openapi.json is a valid OpenAPI document with no repeated
key, and Swagger UI at /api/docs renders every operation in Chromium with no console error."""

from __future__ import annotations

import json

import httpx
from openapi_spec_validator import validate
from playwright.sync_api import expect


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    assert not repeated, f"repeated keys in the OpenAPI document: {repeated}"
    return dict(pairs)


def test_the_openapi_document_is_valid_and_has_no_repeated_key(daphne):
    raw = httpx.get(daphne.url + "/api/openapi.json").text
    document = json.loads(raw, object_pairs_hook=_no_repeated_keys)
    validate(document)  # openapi-spec-validator: raises on any violation
    chat = document["paths"]["/chat"]["post"]["responses"]
    assert "application/x-ndjson" in chat["200"]["content"]


def test_swagger_ui_renders_every_operation_without_a_console_error(page, daphne):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    document = httpx.get(daphne.url + "/api/openapi.json").json()
    operations = sum(len(methods) for methods in document["paths"].values())

    page.goto(daphne.url + "/api/docs")

    expect(page.locator("#swagger-ui .opblock")).to_have_count(operations)
    expect(page.locator("#swagger-ui .errors-wrapper")).to_have_count(0)
    assert errors == []
