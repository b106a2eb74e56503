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
from pydantic import BaseModel, Field

from .avro import SchemaCatalog

MEDIA = "application/vnd.schemaregistry.v1+json"
PREFIX = "/schema-registry"


class RegistryJSON(JSONResponse):
    media_type = MEDIA


class RegistryError(BaseModel):
    error_code: int
    message: str


class SchemaVersion(BaseModel):
    subject: str
    version: int
    id: int
    schema_: str = Field(alias="schema")  # the registry's name; BaseModel has a `schema`


class Schema(BaseModel):
    schema_: str = Field(alias="schema")


class SubjectVersion(BaseModel):
    subject: str
    version: int


class Config(BaseModel):
    compatibilityLevel: str  # noqa: N815 - the registry's name


def _missing_doc(*codes: int) -> dict[int | str, dict[str, object]]:
    return {404: {"model": RegistryError, "description": "error_code "
                  + " or ".join(str(c) for c in codes)}}


def _ok(body: Any) -> JSONResponse:
    return RegistryJSON(body)


def _schema_id(text: str) -> int | None:
    """A schema id or version as the registry numbers them (a 32-bit int), else None: the
    registry's own error then, not the contract's 422 (or a database's overflow)."""
    return int(text) if text.isascii() and text.isdigit() and int(text) < 2**31 else None


def _missing(code: int, message: str) -> JSONResponse:
    return RegistryJSON({"error_code": code, "message": message}, status_code=404)


def add_registry_routes(app: FastAPI, catalog: SchemaCatalog) -> None:
    router = APIRouter(prefix=PREFIX, tags=["schema registry"], default_response_class=RegistryJSON)

    @router.get("/subjects", summary="Every subject (Schema Registry API)",
                response_model=list[str])
    async def subjects() -> JSONResponse:
        return _ok(await asyncio.to_thread(catalog.subjects))

    @router.get("/subjects/{subject}/versions", summary="A subject's versions",
                response_model=list[int], responses=_missing_doc(40401))
    async def versions(subject: str) -> JSONResponse:
        found = (await asyncio.to_thread(catalog.versions, subject)
                 if "\x00" not in subject else None)  # no store keeps NUL: none such
        return _ok(found) if found else _missing(40401, f"Subject '{subject}' not found.")

    @router.get("/subjects/{subject}/versions/{version}",
                summary="One version of a subject (a number, or `latest`)",
                response_model=SchemaVersion,
                responses={**_missing_doc(40401, 40402), 422: {
                    "model": RegistryError, "description": "error_code 42202"}})
    async def version(subject: str, version: str) -> JSONResponse:
        if version not in ("latest", "-1") and _schema_id(version) is None:
            return RegistryJSON({"error_code": 42202, "message": "The specified version"
                                 f" '{version[:20]}' is not a valid version id."},
                                status_code=422, media_type=MEDIA)
        wanted = None if version in ("latest", "-1") else int(version)
        found = (await asyncio.to_thread(catalog.version, subject, wanted)
                 if "\x00" not in subject else None)
        if found is None:
            if "\x00" in subject or not await asyncio.to_thread(catalog.versions, subject):
                return _missing(40401, f"Subject '{subject}' not found.")
            return _missing(40402, f"Version {version} not found.")
        number, sid, text = found
        return _ok({"subject": subject, "version": number, "id": sid, "schema": text})

    @router.get("/schemas/ids/{schema_id}", summary="A schema by the id records carry",
                response_model=Schema, responses=_missing_doc(40403))
    async def schema(schema_id: str) -> JSONResponse:
        sid = _schema_id(schema_id)
        text = None if sid is None else await asyncio.to_thread(catalog.schema, sid)
        if text is None:
            return _missing(40403, "Schema not found")
        return _ok({"schema": text})

    @router.get("/schemas/ids/{schema_id}/versions",
                summary="The subjects and versions that hold a schema",
                response_model=list[SubjectVersion], responses=_missing_doc(40403))
    async def schema_versions(schema_id: str) -> JSONResponse:
        sid = _schema_id(schema_id)
        found = None if sid is None else await asyncio.to_thread(catalog.subjects_of, sid)
        if not found:
            return _missing(40403, "Schema not found")
        return _ok([{"subject": s, "version": v} for s, v in found])

    @router.get("/config", summary="The compatibility level (the registry is read-only)",
                response_model=Config)
    async def config() -> JSONResponse:
        return _ok({"compatibilityLevel": "BACKWARD"})

    app.include_router(router)
