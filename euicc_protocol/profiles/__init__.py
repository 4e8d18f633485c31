"""Profile packages shipped with euicc-sim, by name.

The GSMA TS.48 Generic eUICC Test Profiles (unprotected profile packages: SAIP, the TCA eUICC
Profile Package Interoperable Format, DER ``ProfileElement``\\ s header first) are kept in the
source tree's ``profiles/ts48/`` and installed with the package. Their names are the file names
without ``.der``::

    from euicc_protocol import profiles

    profiles.names()                      # ['TS48V1-A-UNIQUE', 'TS48V1-B-UNIQUE', ...]
    package = profiles.load("TS48V1-A-UNIQUE")
    profiles.path("TS48V1-A-UNIQUE")      # the file, for tools that want one
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TS48_DIRECTORY", "UnknownProfileError", "load", "names", "path"]

#: The directory of the TS.48 packages.
TS48_DIRECTORY = Path(__file__).resolve().parent / "ts48"


class UnknownProfileError(LookupError):
    """No shipped profile package has this name."""


def names() -> list[str]:
    """The names of the shipped profile packages, sorted."""
    return sorted(p.stem for p in TS48_DIRECTORY.glob("*.der"))


def path(name: str) -> Path:
    """The file of the profile package ``name`` (case-insensitive; ``.der`` may be given).

    Raises:
        UnknownProfileError: no shipped package has this name (the message lists them).
    """
    wanted = name.removesuffix(".der").upper()
    for candidate in TS48_DIRECTORY.glob("*.der"):
        if candidate.stem.upper() == wanted:
            return candidate
    raise UnknownProfileError(
        f"no profile package named {name!r}; shipped: {', '.join(names()) or 'none'}"
    )


def load(name: str) -> bytes:
    """The DER bytes of the profile package ``name`` (see :func:`path`)."""
    return path(name).read_bytes()
