"""Activation codes: the ``LPA:1$<SM-DP+ address>$<matchingId>[$<OID>[$<flag>]]`` text of a QR
code or a provisioning order (GSMA SGP.22 v2.5 §4.1; also carried in the activationCode of an
SGP.32 ProfileDownloadTriggerRequest, SGP.32 v1.2 §2.11.1.3).

Format rules applied here, field by field (fields are separated by ``$``; there is no escape):

====  ==========================  =========================================================
#     field                       rule
====  ==========================  =========================================================
0     AC format                   exactly ``1``; an optional ``LPA:`` scheme prefix before it
1     SM-DP+ address              required, non-empty: a host name or IPv4 address, with an
                                  optional ``:port``, or a bracketed IPv6 literal; not a URL
2     AC token (matchingId)       the field is required, its value may be empty
3     SM-DP+ OID                  optional; empty means absent; else a dotted OID (``2.999.10``)
4     confirmation code required  optional; ``1`` = required, empty (or ``0``) = not required
====  ==========================  =========================================================

Five fields at most. Leading and trailing white space of the whole text is ignored (scanners
append line ends); white space or control characters inside a field are errors. Examples:
``1$SMDP.EXAMPLE.COM$04386-AGYFT-A74Y8-3F815`` and
``1$SMDP.EXAMPLE.COM$04386-AGYFT-A74Y8-3F815$1.3.6.1.4.1.31746$1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AC_FORMAT", "ActivationCode", "InvalidActivationCode", "parse_activation_code"]

#: The only activation code format the standard defines.
AC_FORMAT = "1"
_SCHEME = "LPA:"
_MAX_FIELDS = 5

# A DNS label (letters, digits, inner hyphens) or an IPv4 address, then an optional port; or a
# bracketed IPv6 literal (hex digits, colons, dots for an embedded IPv4) with an optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*\.?"
)
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")


class InvalidActivationCode(ValueError):
    """The text is not a valid activation code; the message says which field is wrong."""


def _check_address(address: str) -> None:
    if not address:
        raise InvalidActivationCode("the SM-DP+ address (field 2) is empty")
    if "://" in address or "/" in address:
        raise InvalidActivationCode(
            f"the SM-DP+ address {address!r} must be a host name with an optional :port, not a URL"
        )
    host, port = address, None
    if address.startswith("["):
        end = address.find("]")
        host, rest = address[: end + 1], address[end + 1 :]
        if end < 0 or not _IPV6.fullmatch(host) or (rest and not rest.startswith(":")):
            raise InvalidActivationCode(f"the SM-DP+ address {address!r} is not a valid host")
        port = rest[1:] if rest else None
    else:
        if address.count(":") > 1:
            raise InvalidActivationCode(
                f"the SM-DP+ address {address!r} has more than one ':' (write an IPv6 address "
                "in brackets)"
            )
        host, _, port_text = address.partition(":")
        port = port_text if ":" in address else None
        if len(host) > 253 or not _HOST.fullmatch(host):
            raise InvalidActivationCode(f"the SM-DP+ address {address!r} is not a valid host name")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise InvalidActivationCode(f"the SM-DP+ address {address!r} has an invalid port")


def _check_matching_id(matching_id: str) -> None:
    if "$" in matching_id:
        raise InvalidActivationCode("the matchingId cannot contain '$' (the field separator)")
    bad = [c for c in matching_id if not c.isprintable() or c.isspace()]
    if bad:
        raise InvalidActivationCode(
            f"the matchingId {matching_id!r} contains white space or control characters"
        )


def _check_oid(oid: str) -> None:
    if not _OID.fullmatch(oid):
        raise InvalidActivationCode(
            f"the SM-DP+ OID {oid!r} (field 4) is not a dotted object identifier like 2.999.10"
        )
    first, second = (int(x) for x in oid.split(".")[:2])
    if first < 2 and second >= 40:
        raise InvalidActivationCode(f"the SM-DP+ OID {oid!r} has a second arc above 39")


@dataclass(frozen=True, slots=True)
class ActivationCode:
    """A parsed activation code.

    Attributes:
        smdp_address: the SM-DP+ address (FQDN with an optional ``:port``), as written.
        matching_id: the AC token sent as ``matchingId`` in ctxParams1 (may be empty).
        smdp_oid: the SM-DP+ OID, or None when absent.
        confirmation_code_required: whether the user must enter a confirmation code.
    """

    smdp_address: str
    matching_id: str = ""
    smdp_oid: str | None = None
    confirmation_code_required: bool = False

    def __post_init__(self) -> None:
        # The same rules as parsing, so that every ActivationCode formats to parseable text.
        _check_address(self.smdp_address)
        _check_matching_id(self.matching_id)
        if self.smdp_oid is not None:
            _check_oid(self.smdp_oid)

    @classmethod
    def parse(cls, text: str) -> ActivationCode:
        """Parse ``text``; see :func:`parse_activation_code`."""
        return parse_activation_code(text)

    def format(self, *, scheme: bool = True) -> str:
        """The canonical text: ``LPA:`` (unless ``scheme`` is false), no trailing empty fields."""
        fields = [AC_FORMAT, self.smdp_address, self.matching_id]
        if self.smdp_oid is not None or self.confirmation_code_required:
            fields.append(self.smdp_oid or "")
        if self.confirmation_code_required:
            fields.append("1")
        return (_SCHEME if scheme else "") + "$".join(fields)

    def __str__(self) -> str:
        return self.format()


def parse_activation_code(text: str) -> ActivationCode:
    """Parse an activation code (see the module docstring for the rules).

    Raises:
        InvalidActivationCode: with a message naming the field that breaks the rules.
    """
    if not isinstance(text, str):
        raise InvalidActivationCode(f"an activation code is text, got {type(text).__name__}")
    body = text.strip()
    if body[: len(_SCHEME)].upper() == _SCHEME:
        body = body[len(_SCHEME) :]
    if not body:
        raise InvalidActivationCode("the activation code is empty")
    fields = body.split("$")
    if fields[0] != AC_FORMAT:
        raise InvalidActivationCode(
            f"unsupported activation code format {fields[0]!r}: it must start with '1$'"
        )
    if len(fields) < 3:
        missing = "SM-DP+ address and matchingId" if len(fields) < 2 else "matchingId"
        raise InvalidActivationCode(
            f"the activation code lacks the {missing} field: expected "
            "1$<SM-DP+ address>$<matchingId>[$<SM-DP+ OID>[$<confirmation code flag>]]"
        )
    if len(fields) > _MAX_FIELDS:
        raise InvalidActivationCode(
            f"the activation code has {len(fields)} fields; at most {_MAX_FIELDS} are defined "
            "(format, SM-DP+ address, matchingId, SM-DP+ OID, confirmation code flag)"
        )
    address, matching_id = fields[1], fields[2]
    oid = fields[3] if len(fields) > 3 and fields[3] else None
    flag = fields[4] if len(fields) > 4 else ""
    if flag not in ("", "0", "1"):
        raise InvalidActivationCode(
            f"the confirmation code required flag (field 5) must be '1', '0' or empty, got {flag!r}"
        )
    return ActivationCode(address, matching_id, oid, flag == "1")
