"""Running one command: parse, set up logging, execute, report, exit code.

Every path out of a command goes through :func:`run_command`: a result or an error is reported
once (text, or the ``--json`` envelope), the exit code follows :mod:`euicc_cli.exits`, and no
user error ends in a traceback (an unexpected one is logged with its traceback at DEBUG).

Ctrl-C raises :class:`KeyboardInterrupt` wherever the command is, also inside an asyncio event
loop: the runner installs its own SIGINT handler, which keeps asyncio from turning the first
Ctrl-C into a task cancellation that a blocking prompt (the confirmation code) would not see.
Flows catch the interruption to close what they opened (an interrupted download sends
cancelSession) and the command exits with 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from euicc_cli.exits import CommandError, ExitCode, classify
from euicc_cli.options import VersionRequested, configure_logging, reset_logging
from euicc_cli.output import Output

__all__ = ["run_command", "version"]

log = logging.getLogger("euicc_cli")


def version() -> str:
    """The installed version of the euicc-sim distribution."""
    from euicc_protocol import __version__

    return __version__


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing will be flushed to a dead pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def run_command(
    prog: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str] | None,
    execute: Callable[[argparse.Namespace, Output], None],
    *,
    default_level: int | Callable[[argparse.Namespace], int] = logging.WARNING,
    quiet_loggers: Sequence[str] = (),
) -> int:
    """Run one command line of ``prog``; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Known before parsing, so that a usage error is reported as an envelope too.
    out = Output(prog, json_mode="--json" in argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt) if main_thread else None
    error: CommandError | None = None
    try:
        try:
            args = build_parser().parse_args(argv)
            out.json_mode = bool(args.json)
            default = default_level(args) if callable(default_level) else default_level
            level = configure_logging(args, default=default)
            for name in quiet_loggers:
                logging.getLogger(name).setLevel(max(level, logging.INFO))
            execute(args, out)
            out.finish()
        except VersionRequested:
            v = version()
            out.success({"version": v}, message=f"{prog} {v}", text=f"{prog} {v}")
        except BrokenPipeError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error is reported, none is a traceback
            error = classify(exc)
            if error.message.startswith("internal error"):
                log.debug("traceback of the internal error", exc_info=exc)
            out.failure(error)
        except KeyboardInterrupt as exc:
            error = classify(exc)
            out.failure(error)
    except BrokenPipeError:
        _silence_stdout()
        return int(ExitCode.BROKEN_PIPE)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        for name in quiet_loggers:
            logging.getLogger(name).setLevel(logging.NOTSET)
        reset_logging()
    return Output.exit_code(error)
