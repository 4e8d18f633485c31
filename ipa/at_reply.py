"""Reading a modem's AT replies: lines, final result codes, echo and URCs (pure).

What a TE receives after a command line (ITU-T V.250 §5.7, 3GPP TS 27.007 §9.2):

* possibly the echo of the command line itself (echo on, ``ATE1``);
* information text lines, framed ``<CR><LF>text<CR><LF>``;
* one final result code: ``OK``, ``ERROR``, ``+CME ERROR: <err>`` (numeric or verbose),
  ``+CMS ERROR: <err>``, or V.250's ``NO CARRIER``/``BUSY``/``NO ANSWER``/``NO DIALTONE``;
* at any moment, unsolicited result codes (URCs), framed like information text.

:class:`LineSplitter` turns received bytes into non-empty lines (CR and LF both end a line;
modules differ in which they send). :func:`final_result` recognises final result codes.
Which non-final lines belong to the command and which are URCs is the caller's decision
(a line the command's reply format accepts is information text, anything else a URC).

Hex strings in replies may be quoted or not (27.007 quotes string parameters; several
modules do not): :func:`hex_field` accepts both.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "Final",
    "FinalResult",
    "LineSplitter",
    "final_result",
    "hex_field",
    "split_fields",
]

_HEX = re.compile(r"[0-9A-Fa-f]*")
_CME = re.compile(r"\+CM[ES] ERROR:\s*(.*)")
_FAIL_WORDS = {"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"}


class LineSplitter:
    """Bytes in, complete non-empty lines out (text decoded as ASCII, unknown bytes replaced)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """Add ``data``; return the lines it completed."""
        self._buf += data
        lines = []
        start = 0
        buf = self._buf
        for i, byte in enumerate(buf):
            if byte in (0x0D, 0x0A):
                if i > start:
                    lines.append(buf[start:i].decode("ascii", "replace").strip())
                start = i + 1
        del buf[:start]
        return [line for line in lines if line]

    @property
    def partial(self) -> bytes:
        """Bytes received after the last line end (an unfinished line)."""
        return bytes(self._buf)


class Final(enum.Enum):
    """Kinds of final result codes."""

    OK = "OK"
    ERROR = "ERROR"
    CME_ERROR = "+CME ERROR"


@dataclass(frozen=True, slots=True)
class FinalResult:
    """A final result code. For ``+CME ERROR``, ``code`` (numeric form) or ``text``."""

    kind: Final
    code: int | None = None
    text: str = ""


def final_result(line: str) -> FinalResult | None:
    """The final result code ``line`` is, or ``None`` for any other line."""
    if line == "OK":
        return FinalResult(Final.OK)
    if line == "ERROR" or line in _FAIL_WORDS:
        return FinalResult(Final.ERROR, text=line)
    match = _CME.fullmatch(line)
    if match:
        value = match.group(1).strip()
        if value.isdigit():
            return FinalResult(Final.CME_ERROR, code=int(value))
        return FinalResult(Final.CME_ERROR, text=value)
    return None


def split_fields(text: str) -> list[str]:
    """Comma-separated fields of an information text, quotes removed (commas inside quotes
    kept)."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return fields


def hex_field(text: str) -> bytes:
    """Bytes of a hex string field, quoted or not.

    Raises:
        ValueError: odd length or a non-hex character.
    """
    text = text.strip().strip('"')
    if len(text) % 2 or not _HEX.fullmatch(text):
        raise ValueError(f"not a hex string: {text[:40]!r}")
    return bytes.fromhex(text)
