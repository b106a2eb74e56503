"""A Confluent-compatible Schema Registry REST API, read-only, for the embedded registry
(no `CONTACTSTREAM_SCHEMA_REGISTRY_URL`): standard Kafka clients (confluent-kafka's
AvroDeserializer, kcat -s, ...) decode every topic with ``URL/schema-registry``.

No token: schemas hold no personal data, and Confluent clients cannot send ours. Answers
and errors are in the Schema Registry's own shapes (``{"error_code", "message"}``), which
those clients read, not in the contract's envelope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from .avro import SchemaCatalog

MEDIA = "application/vnd.schemaregistry.v1+json"
PREFIX = "/schema-registry"


def _ok(body: Any) -> JSONResponse:
    return JSONResponse(body, media_type=MEDIA)


def _missing(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=404,
                        media_type=MEDIA)


def add_registry_routes(app: FastAPI, catalog: SchemaCatalog) -> None:
    router = APIRouter(prefix=PREFIX, tags=["schema registry"])

    @router.get("/subjects", summary="Every subject (Schema Registry API)")
    async def subjects() -> JSONResponse:
        return _ok(await asyncio.to_thread(catalog.subjects))

    @router.get("/subjects/{subject}/versions", summary="A subject's versions")
    async def versions(subject: str) -> JSONResponse:
        found = await asyncio.to_thread(catalog.versions, subject)
        return _ok(found) if found else _missing(40401, f"Subject '{subject}' not found.")

    @router.get("/subjects/{subject}/versions/{version}",
                summary="One version of a subject (a number, or `latest`)")
    async def version(subject: str, version: str) -> JSONResponse:
        if version not in ("latest", "-1") and not version.isdigit():
            return JSONResponse({"error_code": 42202, "message": "The specified version"
                                 f" '{version[:20]}' is not a valid version id."},
                                status_code=422, media_type=MEDIA)
        wanted = None if version in ("latest", "-1") else int(version)
        found = await asyncio.to_thread(catalog.version, subject, wanted)
        if found is None:
            if not await asyncio.to_thread(catalog.versions, subject):
                return _missing(40401, f"Subject '{subject}' not found.")
            return _missing(40402, f"Version {version} not found.")
        number, sid, text = found
        return _ok({"subject": subject, "version": number, "id": sid, "schema": text})

    @router.get("/schemas/ids/{schema_id}", summary="A schema by the id records carry")
    async def schema(schema_id: int) -> JSONResponse:
        text = await asyncio.to_thread(catalog.schema, schema_id)
        if text is None:
            return _missing(40403, "Schema not found")
        return _ok({"schema": text})

    @router.get("/schemas/ids/{schema_id}/versions",
                summary="The subjects and versions that hold a schema")
    async def schema_versions(schema_id: int) -> JSONResponse:
        found = await asyncio.to_thread(catalog.subjects_of, schema_id)
        if not found:
            return _missing(40403, "Schema not found")
        return _ok([{"subject": s, "version": v} for s, v in found])

    @router.get("/config", summary="The compatibility level (the registry is read-only)")
    async def config() -> JSONResponse:
        return _ok({"compatibilityLevel": "BACKWARD"})

    app.include_router(router)
