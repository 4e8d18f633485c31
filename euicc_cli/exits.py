"""Exit codes of the ``euicc-sim`` and ``ipa`` commands, and the one mapping from errors to them.

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      success
1      the operation failed: the card or a server answered with an error, a flow ended without
       success, an unexpected internal error
2      usage: the command line is wrong (unknown option, bad value, port above 65535, malformed
       URL or activation code, a file named on the line is missing or unreadable)
3      unreachable: the card or a server could not be reached or opened (no such card
       directory, a damaged or foreign card directory, a card directory another process has
       open, no reader or no card in it, PC/SC missing, connection refused, TLS failure,
       timeout)
130    interrupted (Ctrl-C, SIGINT)
141    stdout was closed early (broken pipe, e.g. ``ipa ... | head -1``)
=====  ==========================================================================================

Every error a command meets goes through :func:`classify`, which turns it into a
:class:`CommandError` carrying one of these codes, a message for people and, where useful,
structured data for scripts. Library modules are looked up in ``sys.modules`` instead of being
imported, so classifying an error never loads the emulator or an HTTP stack.
"""

from __future__ import annotations

import enum
import socket
import sys
from typing import Any

__all__ = ["CommandError", "ExitCode", "UsageError", "classify"]


class ExitCode(enum.IntEnum):
    """The process exit status of a command (see the module doc)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    INTERRUPTED = 130
    BROKEN_PIPE = 141


class CommandError(Exception):
    """A command failed: its exit code, a message for people and data for scripts."""

    def __init__(
        self, message: str, code: ExitCode = ExitCode.FAILED, data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


class UsageError(CommandError):
    """The command line asks for something that cannot be done (exit code 2)."""

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message, ExitCode.USAGE, data)


def _is(exc: BaseException, module: str, *names: str) -> bool:
    """``exc`` is an instance of one of ``module``'s classes ``names`` (if it is loaded)."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return False
    classes = tuple(c for c in (getattr(loaded, n, None) for n in names) if isinstance(c, type))
    return bool(classes) and isinstance(exc, classes)


def _file_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def classify(exc: BaseException) -> CommandError:
    """The :class:`CommandError` that reports ``exc`` (itself if it is one already)."""
    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        notes = getattr(exc, "__notes__", None) or []  # what a flow closed on its way out
        return CommandError("; ".join(["interrupted", *notes]), ExitCode.INTERRUPTED)
    # The IPAd's errors: checked before OSError and ValueError, which some of them subclass.
    if _is(exc, "ipa.download", "DownloadError"):
        return _download_error(exc)
    if _is(exc, "ipa.errors", "Es10Error"):
        data = {
            "function": getattr(exc, "function", None),
            "field": getattr(exc, "field", None),
            "result": getattr(exc, "name", None),
            "resultCode": getattr(exc, "code", None),
        }
        return CommandError(str(exc), ExitCode.FAILED, data)
    if (
        _is(exc, "ipa.errors", "TransportError")
        or _is(exc, "ipa.es9p", "Es9ConnectionError")
        or _is(exc, "ipa.esipa_codes", "EsipaConnectionError")
        or _is(exc, "httpx", "TransportError")
    ):
        return CommandError(str(exc) or type(exc).__name__, ExitCode.UNREACHABLE)
    if _is(exc, "ipa.activation", "InvalidActivationCode"):
        return CommandError(str(exc), ExitCode.USAGE)
    if _is(exc, "ipa.errors", "IpaError"):
        return CommandError(str(exc), ExitCode.FAILED)
    # The emulator's errors (a refused factory operation, a damaged card directory).
    if _is(exc, "euicc_sim.storage", "StorageError"):
        return CommandError(str(exc), ExitCode.UNREACHABLE)
    if _is(exc, "euicc_sim.errors", "CardBusy"):  # one owner per card directory
        data = {"directory": getattr(exc, "directory", None), "pid": getattr(exc, "pid", None)}
        return CommandError(str(exc), ExitCode.UNREACHABLE, data)
    if _is(exc, "euicc_sim.card", "CardError"):
        return CommandError(str(exc), ExitCode.FAILED)
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return CommandError(_file_error(exc), ExitCode.UNREACHABLE)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return CommandError(_file_error(exc), ExitCode.USAGE)
    if isinstance(exc, PermissionError):
        return CommandError(_file_error(exc), ExitCode.USAGE)
    if isinstance(exc, OSError):
        return CommandError(_file_error(exc), ExitCode.FAILED)
    if isinstance(exc, ValueError):
        return CommandError(str(exc), ExitCode.USAGE)
    return CommandError(
        f"internal error: {type(exc).__name__}: {exc} (run with -vv for the traceback)",
        ExitCode.FAILED,
    )


def _download_error(exc: BaseException) -> CommandError:
    reason = getattr(exc, "cancel_reason", None)
    data: dict[str, Any] = {
        "step": getattr(exc, "step", None),
        "transactionId": _hex(getattr(exc, "transaction_id", None)),
        "cancelSessionReason": getattr(reason, "asn1_name", None),
        "cancelledOnCard": getattr(exc, "cancelled_on_card", False),
        "cancelledOnServer": getattr(exc, "cancelled_on_server", False),
    }
    code = ExitCode.FAILED
    if _is(exc, "ipa.download", "SmdpUnreachableError"):
        code = ExitCode.UNREACHABLE
    message = str(exc)
    if reason is not None:
        card = "yes" if data["cancelledOnCard"] else "no"
        server = "yes" if data["cancelledOnServer"] else "no"
        message += (
            f" (session cancelled, {reason.asn1_name}: on the card {card}, on the SM-DP+ {server})"
        )
    return CommandError(message, code, data)


def _hex(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    return None if value is None else str(value)
