"""What every side of the RSP system speaks: ASN.1 schema and codec, crypto, PKI, SAIP.

This package imports nothing else of the project. Its modules are imported by name
(``from euicc_protocol import schema``); the root stays empty so that importing it is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use
        from euicc_protocol.version import version

        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
