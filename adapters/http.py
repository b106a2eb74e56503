"""The HTTP API's helpers under their former names, for modules written against them; the
API itself is the package adapters/api (one module per resource)."""

from __future__ import annotations

from .api.app import add_case_routes, add_privacy_routes, create_app
from .api.auth import role, token_fingerprint
from .api.bodies import check_json_type, parse_json
from .api.errors import ApiError, UnexpectedErrors
from .api.paging import MAX_BIGINT, decode_cursor, decode_offset, encode_cursor, encode_offset

__all__ = ["MAX_BIGINT", "ApiError", "UnexpectedErrors", "add_case_routes",
           "add_privacy_routes", "check_json_type", "create_app", "decode_cursor",
           "decode_offset", "encode_cursor", "encode_offset", "parse_json", "role",
           "token_fingerprint"]
