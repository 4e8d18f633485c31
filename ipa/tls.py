"""TLS trust for the IPAd's HTTPS clients (ES9+' to an SM-DP+, ESipa to an eIM).

RSP servers present certificates issued under a GSMA CI (or an eIM's own PKI), not the web
PKI. When the caller names trust anchors they are the *only* roots: loading the system
store as well would let any public CA vouch for an SM-DP+ or an eIM.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Sequence

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "anchored_context",
    "certificate_public_key",
    "https_client",
    "shared_client_context",
    "unverified_context",
]


def anchored_context(anchors: Sequence[bytes], *, partial_chain: bool = False) -> ssl.SSLContext:
    """A client context trusting exactly ``anchors`` (PEM or DER certificates).

    Python's defaults otherwise apply (chain, validity, host name, TLS 1.2+).
    ``partial_chain`` lets an anchor be an intermediate or the server's own certificate (an eIM
    TLS certificate configured on the card is such an anchor). Raises ``ValueError`` when an
    anchor is not a certificate, or when there is none.
    """
    if not anchors:
        raise ValueError("no trust anchors given")
    try:
        first, *rest = (_cadata(data) for data in anchors)
        # Given cadata, create_default_context loads no system certificates.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=first)
        for cadata in rest:
            context.load_verify_locations(cadata=cadata)
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not a PEM or DER certificate: {exc}") from None
    if partial_chain:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


@functools.lru_cache(maxsize=16)
def shared_client_context(
    anchors: tuple[bytes, ...] | None, *, verify: bool = True
) -> ssl.SSLContext:
    """A client context made once per ``(anchors, verify)`` and shared (do not modify it).

    Building a context costs milliseconds (certificates parsed, the system store loaded),
    more than a request on a kept-alive connection; a client made per download or per
    notification batch takes it from here. ``anchors``: exactly those trust anchors (see
    :func:`anchored_context`), or None for the system's; ``verify=False``: the context of
    :func:`unverified_context` (``anchors`` ignored). Keyed by the exact certificate bytes,
    at most 16 kept.
    """
    if not verify:
        return unverified_context()
    if anchors:
        return anchored_context(anchors)
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


def https_client(
    verify: ssl.SSLContext | bool,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A new httpx client verifying with ``verify``, or over ``transport`` (tests) when given;
    the caller closes it."""
    if transport is not None:
        return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout))
    return httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(timeout))


def unverified_context() -> ssl.SSLContext:
    """A client context that checks neither chain nor host name.

    For a pinned server key (the caller checks the key itself after the handshake) and for
    explicit ``insecure`` test set-ups.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def certificate_public_key(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo (DER) of a DER certificate, to compare with a pinned key."""
    return (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _cadata(data: bytes) -> str | bytes:
    """``cadata`` takes PEM as text and DER as bytes."""
    return data.decode("ascii") if b"-----BEGIN" in data else data
