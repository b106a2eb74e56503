"""adapters/api/errors.py: a database that does not answer is a 503 in the contract's
envelope, whether psycopg said so or the case store's library did, once its retries were
spent (not a 500)."""

from __future__ import annotations

import psycopg
import pytest
from eventsourcing import persistence
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contactstream.adapters.api.errors import install


@pytest.mark.parametrize("exc", [
    psycopg.OperationalError("connection refused"),
    persistence.OperationalError("terminating connection due to administrator command"),
    persistence.InterfaceError("the connection is closed"),
])
def test_a_database_that_does_not_answer_is_a_503_to_retry(exc: Exception) -> None:
    app = FastAPI()
    install(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"error": {"code": "database_unavailable",
                                         "message": "the database is not answering; retry"}}


def test_another_error_of_the_library_is_not_taken_for_an_outage() -> None:
    app = FastAPI()
    install(app)

    @app.get("/boom")
    def boom() -> None:
        raise persistence.IntegrityError("duplicate key")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
