"""Server addresses as SGP.22 uses them (an FQDN or IP address, optionally ``:port``): what a
well-formed one is, and the canonical form two of them are compared in.

A host name is at most 253 characters of dot-separated labels, each 1..63 letters, digits or
hyphens, not starting or ending with a hyphen (RFC 1035 §2.3.4, RFC 1123 §2.1); an IPv4
address is four decimal octets; a port is 1..65535.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["AddressError", "canonical_address", "is_valid_address"]

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class AddressError(ValueError):
    """Not a usable server address (the message says why)."""


def canonical_address(address: str) -> str:
    """``address`` in lower case with its port (if any) normalised.

    Raises:
        AddressError: not ``host[:port]`` with a valid host name or IPv4 address.
    """
    if not isinstance(address, str) or not address or len(address) > 260:
        raise AddressError("an address is 1..260 characters")
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, ""
    elif not (port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise AddressError(f"bad port in {address[:64]!r}")
    host = host.lower()
    if len(host) > 253:
        raise AddressError("a host name is at most 253 characters")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        if not all(_LABEL.match(label) for label in labels):
            raise AddressError(
                f"{address[:64]!r} is not a host name (labels of 1..63 letters, digits, '-')"
            ) from None
    return f"{host}:{int(port)}" if port else host


def is_valid_address(address: str) -> bool:
    """Whether :func:`canonical_address` accepts ``address``."""
    try:
        canonical_address(address)
    except AddressError:
        return False
    return True
