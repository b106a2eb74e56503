"""The web console (`GET /console`): a small app of plain HTML, CSS and JavaScript shipped
in the package (adapters/console/), and the customer lookup it uses, with the identifier
in a JSON body (`POST /v1/customers/lookup`) so no personal data is in a URL.

The page needs no token; everything it shows comes from the API with the bearer token the
user gives, so the API's roles apply. No CDN, no build step: it works offline."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from .auth import role
from .bodies import StorableBody
from .customers import find_customer
from .errors import V1, ApiError, responses
from .paging import only_known_params

ASSETS = {"console.css": "text/css; charset=utf-8",
          "console.js": "text/javascript; charset=utf-8"}
# the page runs only its own files and talks only to this server; it is never framed and
# never tells another site where it was
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " img-src 'self' data:; connect-src 'self'; base-uri 'none';"
                               " form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
KINDS = ("id", "email", "phone", "visitor_id")


class Lookup(StorableBody):
    """Exactly one identifier of the customer, as `GET /v1/customers/lookup` takes it."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=64)
    visitor_id: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def exactly_one(self) -> Lookup:
        if len(self.given()) != 1:
            raise ValueError("give exactly one of id, email, phone, visitor_id")
        return self

    def given(self) -> list[tuple[str, str]]:
        return [(k, v) for k in KINDS if (v := getattr(self, k))]


class Found(BaseModel):
    id: str


def _asset(name: str) -> bytes:
    return files("contactstream.adapters").joinpath("console", name).read_bytes()


# the page and its files need no token; the lookup is a customer read like the GET one
router = APIRouter(tags=["console"])
lookup_router = APIRouter(tags=["customers"], dependencies=[Depends(only_known_params)])
PAGE = _asset("index.html")
FILES = {name: _asset(name) for name in ASSETS}


@router.get("/console", response_class=Response,
            summary="The web console: wallboard and agent desk (no token for the page)",
            responses={200: {"content": {"text/html": {}}}})
async def console() -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/console/{name}", response_class=Response, include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in FILES:
        raise ApiError(404, "not_found", "no such file in the console")
    return Response(FILES[name], media_type=ASSETS[name], headers=HEADERS)


@lookup_router.post("/v1/customers/lookup", response_model=Found,
                    summary="Find a customer by one identifier, given in the body",
                    responses=responses(*V1, 404, e422="not exactly one identifier given"))
async def lookup(body: Lookup, request: Request, _: str = Depends(role("read"))) -> Found:
    (kind, value), = body.given()
    return Found(id=await run_in_threadpool(find_customer, request, kind, value))
