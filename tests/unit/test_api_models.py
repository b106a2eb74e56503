"""The OpenAPI document tells the truth (issue 11, item 2): every /v1 operation declares
the error envelope for what it can answer, bodies are typed, and the model literals are
the domain's lists."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from fastapi import FastAPI

from contactstream.adapters.api import customers, privacy, sla, webhooks
from contactstream.adapters.api.app import add_case_routes, create_app
from contactstream.adapters.auth import TokenTable
from contactstream.domain.interactions import CHANNELS
from contactstream.domain.sla import ALERT_KINDS

ENVELOPE = "#/components/schemas/ErrorEnvelope"


class NoStore:
    privacy = None


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app = create_app(None, NoStore(), TokenTable({}), insights=object())  # type: ignore[arg-type]
    add_case_routes(app, None, None, None)  # type: ignore[arg-type]
    app.include_router(privacy.router)
    app.include_router(customers.identity_router)
    return FastAPI.openapi(app)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()
            if p.startswith("/v1/")]


def test_the_model_literals_are_the_domain_lists() -> None:
    assert typing.get_args(sla.Channel) == CHANNELS
    assert typing.get_args(webhooks.AlertKind) == ALERT_KINDS


def test_every_v1_operation_declares_its_errors_as_the_envelope(doc: dict[str, Any]) -> None:
    ops = _operations(doc)
    assert len(ops) >= 33
    for method, path, op in ops:
        declared = op["responses"]
        for status in ("400", "401", "403", "503"):
            schema = declared[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ENVELOPE}, (method, path, status)
        if "{" in path and not path.startswith("/v1/sla-policies/") \
                and not path.startswith(("/v1/calendars/", "/v1/webhooks/")) \
                or method == "DELETE":
            assert "404" in declared, (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's {"detail"}
    assert set(doc["components"]["schemas"]["ErrorEnvelope"]["required"]) == {"error"}


def test_answers_and_bodies_are_typed_models(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        ok = next(s for s in op["responses"] if s.startswith("2"))
        if ok == "204" or path == "/v1/alerts/stream":
            continue
        schema = op["responses"][ok]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (method, path, schema)
    schemas = doc["components"]["schemas"]
    assert set(schemas["PolicyIn"]["required"]) == {"first_response_s", "resolution_s"}
    assert set(schemas["CalendarIn"]["required"]) == {"timezone", "hours"}
    assert set(schemas["WebhookIn"]["required"]) == {"url", "secret"}
    kinds = schemas["WebhookIn"]["properties"]["kinds"]["anyOf"][0]["items"]
    assert set(kinds["enum"]) == set(ALERT_KINDS)
    events = doc["paths"]["/v1/events"]["post"]
    assert "rejected" in events["description"]
    assert events["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IngestResult"}
