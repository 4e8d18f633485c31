"""The version of the installed ``euicc-sim`` distribution (one source of truth: its metadata,
which the build takes from ``pyproject.toml``)."""

from __future__ import annotations

import functools

__all__ = ["DISTRIBUTION", "version"]

#: The name the packages are installed under (``pip install euicc-sim``).
DISTRIBUTION = "euicc-sim"


@functools.cache
def version() -> str:
    """The installed version, or ``0+unknown`` when the packages run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
