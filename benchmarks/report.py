"""What the benchmark scripts share: a command line with ``--json``, and printing the figures.

Each script is run as ``python benchmarks/NAME.py``, so this directory is on ``sys.path`` and
they import it as ``report``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring, with ``--json``."""
    made = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    made.add_argument("--json", action="store_true", help="print one JSON object")
    return made


def mark(ok: bool, failed: str = "BELOW FLOOR") -> str:
    """``ok`` or what a figure that misses its floor is called."""
    return "ok" if ok else failed


def print_figures(results: Mapping[str, object], as_json: bool, floors: Iterable[str] = ()) -> None:
    """One JSON object; or one ``name value`` line per figure, then the ``floors`` lines."""
    if as_json:
        print(json.dumps(results))
        return
    for key, value in results.items():
        print(f"{key:20} {value}")
    for line in floors:
        print(line)
