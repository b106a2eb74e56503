"""What a customer's identifiers must look like: an e-mail address, a phone number, a
customer id that can be read back by id. Syntax only; matching (normalisation) is in
projections/identifiers.py."""

from __future__ import annotations

import re
from typing import Final

MAX_EMAIL: Final = 254  # RFC 5321: the longest address a mail server must accept
MAX_LOCAL_PART: Final = 64
MAX_PHONE: Final = 64  # as written: spaces, dashes, a leading 0 or +

# RFC 5322 dot-atom, with any non-ASCII character allowed as well (RFC 6531, SMTPUTF8)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# a DNS label: letters or digits of any script, inner hyphens (IDNs as written)
_LABEL = re.compile(r"(?!-)[^\W_](?:[^\W_]|-){0,62}(?<!-)")
_PHONE_CHARS = re.compile(r"\+?[0-9 ()./\-]+")


def email_problem(value: str) -> str | None:
    """Why ``value`` (trimmed) is not an e-mail address, or None: ``local@domain`` with a
    dot-atom local part and a domain of at least two DNS labels, the last not numeric."""
    v = value.strip()
    if len(v) > MAX_EMAIL:
        return f"longer than {MAX_EMAIL} characters"
    local, at, domain = v.rpartition("@")
    if not at or not local or len(local) > MAX_LOCAL_PART or not _LOCAL.fullmatch(local):
        return "not an e-mail address"
    labels = domain.split(".")
    if len(labels) < 2 or labels[-1].isdigit() or not all(_LABEL.fullmatch(x) for x in labels):
        return "not an e-mail address"
    if any(c.isspace() for c in v):
        return "not an e-mail address"
    return None


def phone_syntax_ok(value: str) -> bool:
    """The domain's own floor for a phone number: digits with the usual separators and an
    optional leading +, 5 to 17 digits. Ingest asks libphonenumber instead (a number of a
    possible length for its country: ``projections.identifiers.possible_phone``)."""
    v = value.strip()
    digits = sum(c.isdigit() for c in v)
    return bool(_PHONE_CHARS.fullmatch(v)) and 5 <= digits <= 17


def customer_id_problem(value: str, limit: int) -> str | None:
    """Why ``value`` cannot be a customer id, or None. An id is read back by id in a URL
    path (``GET /v1/customers/{id}``): a ``/`` or a whole ``.``/``..`` segment cannot be,
    and one with spaces around it or control characters would be published as it is but
    found only as something else."""
    if len(value) > limit:
        return f"longer than {limit} characters"
    if "/" in value:
        return "must not contain '/'"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if value != value.strip():
        return "must not start or end with white space"
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in value):
        return "must not contain control characters"
    return None
