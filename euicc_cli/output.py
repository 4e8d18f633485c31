"""What a command prints: text for people, or JSON for scripts (``--json``).

With ``--json`` a command prints exactly one JSON document on stdout, the *envelope*, on
success and on failure alike::

    {"ok": true, "code": 0, "message": "ok", "data": {...}}
    {"ok": false, "code": 1, "message": "deleteResult profileNotInDisabledState (2) ...",
     "data": {"function": "ES10c.DeleteProfile", ...}}

``code`` is the process exit status (:mod:`euicc_cli.exits`), ``message`` a sentence for
people, ``data`` the command's result (ASN.1 field names where the standard names the field) or,
on failure, details of the error (or ``null``).

Streaming commands (``ipa poll``, ``ipa fleet``, ``euicc-sim serve|smdpp|eim``) print JSON Lines
instead: one compact object per line as things happen, each with an ``"event"`` key, and the
envelope, also on one line, last. Every line is one complete JSON document.

Messages for people (and, in text mode, errors) go to stderr prefixed with the program name.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from euicc_cli.exits import CommandError, ExitCode

__all__ = ["Output"]


class Output:
    """The one writer of a command's stdout; makes sure the envelope is printed exactly once."""

    def __init__(
        self, prog: str, *, json_mode: bool, stream: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.prog = prog
        self.json_mode = json_mode
        self._stream = stream
        self._err = err
        self.streaming = False
        self.finished = False

    @property
    def stdout(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def _write_json(self, document: dict[str, Any]) -> None:
        if self.streaming:
            text = json.dumps(document, separators=(",", ":"), default=str)
        else:
            text = json.dumps(document, indent=2, default=str)
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def text(self, line: str = "") -> None:
        """Print a line for people (nothing in JSON mode)."""
        if not self.json_mode:
            self.stdout.write(line + "\n")

    def note(self, message: str) -> None:
        """A remark for people on stderr (both modes: stdout stays machine-readable)."""
        self.stderr.write(f"{self.prog}: {message}\n")
        self.stderr.flush()

    def event(self, event: str, data: dict[str, Any], text: str | None = None) -> None:
        """One step of a streaming command: a JSON Lines object, or ``text`` for people."""
        self.streaming = True
        if self.json_mode:
            self._write_json({"event": event, **data})
        elif text is not None:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def success(
        self, data: Any = None, *, message: str = "ok", text: str | list[str] | None = None
    ) -> None:
        """The command's result: the envelope in JSON mode, else ``text`` (or nothing)."""
        if self.finished:
            raise RuntimeError("a command reports its result once")
        self.finished = True
        if self.json_mode:
            self._write_json({"ok": True, "code": 0, "message": message, "data": data})
            return
        lines = [text] if isinstance(text, str) else (text or [])
        for line in lines:
            self.stdout.write(line + "\n")
        self.stdout.flush()

    def failure(self, error: CommandError) -> None:
        """Report ``error``: a message on stderr, and the envelope in JSON mode."""
        self.note(error.message)
        if self.finished:
            return
        self.finished = True
        if self.json_mode:
            code = int(error.code)
            self._write_json(
                {"ok": False, "code": code, "message": error.message, "data": error.data}
            )

    def finish(self) -> None:
        """Close a command that reported no result of its own (``{"data": null}``)."""
        if not self.finished:
            self.success()

    @staticmethod
    def exit_code(error: CommandError | None) -> int:
        return int(ExitCode.OK if error is None else error.code)
