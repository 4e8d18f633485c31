"""The AT command line as ITU-T V.250 frames it, and the result codes of 3GPP TS 27.007.

Pure: bytes of command lines in, parsed commands out; result codes in, bytes out.

Rules (V.250 §5.1-§5.7, TS 27.007 §4 and §9.2):

* A command line starts with ``AT`` (either case) and ends with S3 (carriage return). A line
  feed after it is ignored, as is anything before the ``A``; a line without ``AT`` is not a
  command and gets no answer. Backspace (S5) deletes the character before it.
* After ``AT`` come basic commands (a letter or ``&`` and a letter, then an optional number:
  ``E0``, ``I``, ``&F``) and extended commands (``+``, ``^``, ``#`` or ``$`` and a name), the
  latter separated by ``;``. An extended command is an action (``+CIMI``), a set command
  (``+CMEE=2``), a read command (``+CPIN?``) or a test command (``+CCHO=?``).
* Arguments are separated by commas; a string argument is quoted with ``"`` and may hold
  commas. Arguments keep their text and whether they were quoted; the command decides what
  they mean (27.007 hex strings are quoted, but lenient TEs send them bare).
* Information text goes out as ``<CR><LF>text<CR><LF>``, final result codes as
  ``<CR><LF>OK<CR><LF>``, ``ERROR`` or ``+CME ERROR: <err>`` (numeric with ``+CMEE=1``,
  verbose with ``+CMEE=2``, plain ``ERROR`` with ``+CMEE=0``); unsolicited result codes
  (URCs) are framed like information text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CME_TEXT",
    "AtArg",
    "AtCommand",
    "AtSyntaxError",
    "CommandKind",
    "LineBuffer",
    "cme_error",
    "final_ok",
    "info",
    "parse_command_line",
]

_CR = 0x0D
_LF = 0x0A
_BS = 0x08
#: Longest command line kept; longer ones are answered ERROR (V.250 asks for at least 40
#: characters; real modules take a few thousand, enough for a 255-byte APDU in hex twice).
MAX_LINE = 4096


class AtSyntaxError(ValueError):
    """The command line is not valid V.250 syntax (answered with ``ERROR``)."""


class CommandKind(enum.Enum):
    """The four forms of an extended command (V.250 §5.3) and the basic form."""

    ACTION = "action"  # +CIMI, and basic commands (E0, I)
    SET = "set"  # +CMEE=2
    READ = "read"  # +CPIN?
    TEST = "test"  # +CCHO=?


@dataclass(frozen=True, slots=True)
class AtArg:
    """One argument: its text (without quotes) and whether it was quoted."""

    text: str
    quoted: bool = False

    @property
    def empty(self) -> bool:
        """Whether the argument was omitted (``AT+X=1,,3``)."""
        return not self.quoted and self.text == ""


@dataclass(frozen=True, slots=True)
class AtCommand:
    """One command of a command line.

    Attributes:
        name: upper-case name with its prefix: ``+CSIM``, ``^ICCID``, ``E``, ``I``, ``&F``.
        kind: action, set, read or test.
        args: set-command arguments (basic commands: their number as one argument).
    """

    name: str
    kind: CommandKind
    args: tuple[AtArg, ...] = ()

    @property
    def basic(self) -> bool:
        """Whether this is a basic (V.250 §5.3.1) command."""
        return self.name[0] not in "+^#$"


class LineBuffer:
    """Collects received bytes into command lines (S3-terminated), applying backspace."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.overflowed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the command lines it completed (without the CR)."""
        lines = []
        for byte in data:
            if byte == _CR:
                line = bytes(self._buf)
                self._buf.clear()
                if self.overflowed:
                    self.overflowed = False
                    lines.append(b"\x00overflow")
                else:
                    lines.append(line)
            elif byte == _LF and not self._buf:
                continue  # the LF of a CR LF pair a terminal program sends
            elif byte == _BS:
                if self._buf:
                    self._buf.pop()
            elif len(self._buf) < MAX_LINE:
                self._buf.append(byte)
            else:
                self.overflowed = True
        return lines


def _split_args(text: str) -> tuple[AtArg, ...]:
    args: list[AtArg] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise AtSyntaxError("unterminated string")
            args.append(AtArg(text[i + 1 : end], quoted=True))
            i = end + 1
            while i < n and text[i] == " ":
                i += 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            token = text[i:end].strip()
            if '"' in token:
                raise AtSyntaxError("quote inside an unquoted argument")
            args.append(AtArg(token))
            i = end
        if i >= n:
            return tuple(args)
        if text[i] != ",":
            raise AtSyntaxError(f"expected ',' at {text[i:]!r}")
        i += 1
        if i >= n:
            args.append(AtArg(""))
            return tuple(args)


def _split_extended(body: str) -> list[str]:
    """Split ``+A=1;+B?`` at semicolons outside quotes."""
    parts, start, quoted = [], 0, False
    for i, ch in enumerate(body):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append(body[start:i])
            start = i + 1
    if quoted:
        raise AtSyntaxError("unterminated string")
    parts.append(body[start:])
    return [p for p in parts if p.strip()]


def _parse_extended(text: str) -> AtCommand:
    name_end = 1
    while name_end < len(text) and (text[name_end].isalnum() or text[name_end] in "!%-._/:"):
        name_end += 1
    name = text[:name_end].upper()
    if len(name) < 2:
        raise AtSyntaxError(f"no command name in {text!r}")
    rest = text[name_end:].strip()
    if rest == "":
        return AtCommand(name, CommandKind.ACTION)
    if rest == "?":
        return AtCommand(name, CommandKind.READ)
    if rest == "=?":
        return AtCommand(name, CommandKind.TEST)
    if rest.startswith("="):
        return AtCommand(name, CommandKind.SET, _split_args(rest[1:]))
    raise AtSyntaxError(f"unexpected {rest!r} after {name}")


def _parse_basic(body: str) -> tuple[list[AtCommand], str]:
    """Basic commands at the start of ``body``; returns them and the extended remainder."""
    commands = []
    i, n = 0, len(body)
    while i < n and body[i] not in "+^#$":
        ch = body[i]
        if ch == " ":
            i += 1
            continue
        if ch == "&" and i + 1 < n:
            name, i = "&" + body[i + 1].upper(), i + 2
        elif ch.isalpha():
            name, i = ch.upper(), i + 1
        else:
            raise AtSyntaxError(f"unexpected {ch!r}")
        start = i
        while i < n and body[i].isdigit():
            i += 1
        if i < n and body[i] == "?":
            commands.append(AtCommand(name, CommandKind.READ))
            i += 1
            continue
        number = body[start:i]
        args = (AtArg(number),) if number else ()
        commands.append(AtCommand(name, CommandKind.ACTION, args))
    return commands, body[i:]


def parse_command_line(line: bytes) -> list[AtCommand] | None:
    """The commands of one command line (without its CR).

    Returns ``None`` for a line that is no command (no ``AT`` prefix: not answered) and an
    empty list for a bare ``AT`` (answered ``OK``).

    Raises:
        AtSyntaxError: the line starts with ``AT`` but its commands are malformed.
    """
    start = line.upper().find(b"AT")  # V.250 §5.2.1: anything before the prefix is ignored
    if start < 0:
        return None
    try:
        body = line[start + 2 :].decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise AtSyntaxError("non-ASCII characters in the command line") from exc
    if "\x00" in body:
        raise AtSyntaxError("NUL in the command line")
    basics, rest = _parse_basic(body)
    return basics + [_parse_extended(part.strip()) for part in _split_extended(rest)]


# -- result codes ------------------------------------------------------------------------------

#: Verbose texts of the +CME ERROR codes this modem uses (TS 27.007 §9.2.1).
CME_TEXT: dict[int, str] = {
    0: "phone failure",
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    21: "invalid index",
    24: "text string too long",
    25: "invalid characters in text string",
    50: "Incorrect parameters",
    100: "unknown",
}


def info(text: str) -> bytes:
    """An information text or URC line, framed ``<CR><LF>text<CR><LF>``."""
    return b"\r\n" + text.encode("ascii") + b"\r\n"


def final_ok() -> bytes:
    """The ``OK`` final result code."""
    return b"\r\nOK\r\n"


def cme_error(code: int, cmee: int) -> bytes:
    """The final result code for error ``code`` under ``+CMEE=<cmee>``."""
    if cmee == 1:
        return info(f"+CME ERROR: {code}")
    if cmee == 2:
        return info(f"+CME ERROR: {CME_TEXT.get(code, CME_TEXT[100])}")
    return b"\r\nERROR\r\n"
