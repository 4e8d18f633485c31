"""Argument parsing shared by ``euicc-sim`` and ``ipa``.

* :class:`CommandParser` raises :class:`~euicc_cli.exits.UsageError` instead of exiting, so a
  usage error reaches the same reporting (and the ``--json`` envelope) as every other error.
* Global options (output, logging, and for ``ipa`` the card selection) are accepted anywhere on
  the line: :func:`global_options` makes a parent parser whose options default to "not given",
  added to the top parser and to every sub-command; the top parser holds the real defaults.
* A sub-command may add its arguments lazily (``build=``): its module, and what that module
  imports (an HTTP server, the fleet runner), is loaded only when that command runs or shows
  its help, which keeps the other commands quick to start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

from euicc_cli.exits import UsageError

__all__ = [
    "LOG_LEVELS",
    "CommandParser",
    "VersionRequested",
    "configure_logging",
    "global_options",
    "log_level",
    "port",
    "url",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class VersionRequested(Exception):  # noqa: N818 - a request, not an error
    """``--version`` was given (the runner prints it, as text or as an envelope)."""


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise VersionRequested()


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError and may add its arguments on first use."""

    def __init__(self, *args: Any, build: Callable[[CommandParser], None] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._build = build

    def _ensure_built(self) -> None:
        build, self._build = self._build, None
        if build is not None:
            build(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._ensure_built()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ensure_built()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def global_options(add: Callable[[argparse.ArgumentParser], None]) -> CommandParser:
    """A parent parser holding the options ``add`` defines, as accepted anywhere on the line.

    ``add`` must give every option ``default=argparse.SUPPRESS``; the top parser sets the real
    defaults (``set_defaults``), so an option given after the command overrides one before it
    and an option not given after the command leaves the earlier value alone.
    """
    parent = CommandParser(add_help=False)
    group = parent.add_argument_group("global options (before or after the command)")
    add(group)  # type: ignore[arg-type]
    return parent


def add_output_options(group: argparse.ArgumentParser) -> None:
    """``--json``, ``-v``/``-vv`` and ``--log-level``."""
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document (streaming commands: JSON Lines); see docs/cli.md",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="-v: progress on stderr (INFO); -vv: also APDU and HTTP traces (DEBUG)",
    )
    group.add_argument(
        "--log-level",
        type=log_level,
        default=argparse.SUPPRESS,
        metavar="LEVEL",
        help=f"log level on stderr: {', '.join(LOG_LEVELS)} (overrides -v)",
    )


OUTPUT_DEFAULTS: dict[str, Any] = {"json": False, "verbose": 0, "log_level": None}


def add_version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")


def log_level(text: str) -> str:
    """argparse type of ``--log-level``."""
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(LOG_LEVELS)}")
    return level


def port(text: str) -> int:
    """argparse type of a TCP port (0..65535)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range (0..65535)")
    return value


def url(text: str) -> str:
    """argparse type of an http(s) URL."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def configure_logging(args: argparse.Namespace, *, default: int = logging.WARNING) -> int:
    """Logging to stderr at the level ``-v``/``-vv``/``--log-level`` ask for; returns it."""
    if args.log_level is not None:
        level = getattr(logging, args.log_level)
    elif args.verbose:
        level = logging.DEBUG if args.verbose >= 2 else logging.INFO
    else:
        level = default
    root = logging.getLogger()
    root.setLevel(level)
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    return level


def reset_logging() -> None:
    """Undo :func:`configure_logging` (a command run in-process leaves logging as it was)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass
