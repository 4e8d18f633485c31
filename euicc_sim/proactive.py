"""Proactive UICC, as far as a profile switch needs it: the pending REFRESH (ETSI TS 102 221
§14.6, ETSI TS 102 223 §6.4.7), FETCH, TERMINAL PROFILE and TERMINAL RESPONSE.

Pure and volatile: the pending command lives in RAM and is lost at reset or power off (a reset
is what a REFRESH in UICC Reset mode asks for, and a switch is committed before the REFRESH is
queued, so nothing is lost with it).

Rules
=====

1. A profile switch the device asked to be refreshed (ES10c Enable/DisableProfile with
   refreshFlag TRUE, ImmediateEnable, ProfileRollback, ExecuteFallbackMechanism and
   ReturnFromFallback with refreshFlag TRUE) and every eUICC package whose PSMOs changed the
   enabled profile (PSMOs carry no refreshFlag; the eIM cannot reset the device) leave one
   REFRESH pending: ``D0 { 81 03 <number> 01 04, 82 02 81 82 }``, command qualifier ``04``
   UICC Reset (SGP.22 §3.2.1 / §3.2.2), from the UICC (``81``) to the terminal (``82``).
   Command numbers run 1..254 and wrap.
2. With refreshFlag FALSE the switch is made and nothing is queued: the device resets the
   card when it sees fit.
3. While a proactive command is outstanding (queued, or fetched and not yet answered), a
   switch that asks for a REFRESH is refused with catBusy (5) and changes nothing.
4. Indication: every response whose status word would be ``90 00`` ends with ``91 xx``
   instead (``xx`` = length of the pending command), on any logical channel, until the
   command is fetched. ``61 xx`` keeps priority (ETSI TS 102 221 §7.3.1.1.5): the data of
   a case-4 command comes first and the last GET RESPONSE slice carries the ``91 xx``.
5. FETCH (``80 12 00 00 Le``, basic channel): returns the command with ``90 00``; ``Le``
   shorter than the command answers ``6C xx``; nothing pending ``6985``.
6. TERMINAL RESPONSE (``80 14 00 00 Lc``): COMPREHENSION-TLVs; the command details
   (``01``/``81``, 3 bytes) must be those of the fetched command, otherwise ``6A80``;
   nothing fetched ``6985``. It ends the proactive command whatever its result (a terminal
   that cannot reset now answers result ``20``; the card does not retry). In UICC Reset
   mode the terminal sends none (ETSI TS 102 223 §6.4.7): the reset answers it.
7. TERMINAL PROFILE (``80 10 00 00 Lc``, 1..255 bytes) is accepted with ``90 00`` and kept
   until reset; this card does not consult it (refreshFlag is the device's explicit ask).
"""

from __future__ import annotations

from euicc_protocol import tlv

from .apdu import StatusWordError

TYPE_REFRESH = 0x01
REFRESH_UICC_RESET = 0x04

_DEVICE_UICC = 0x81
_DEVICE_TERMINAL = 0x82

SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_INCORRECT_DATA = 0x6A80
SW_WRONG_LENGTH = 0x6700

_COMMAND_DETAILS_TAGS = (b"\x01", b"\x81")


def refresh_command(number: int, qualifier: int = REFRESH_UICC_RESET) -> bytes:
    """The REFRESH proactive command TLV (ETSI TS 102 223 §6.6.13)."""
    details = tlv.encode_tlv(b"\x81", bytes((number, TYPE_REFRESH, qualifier)))
    devices = tlv.encode_tlv(b"\x82", bytes((_DEVICE_UICC, _DEVICE_TERMINAL)))
    return tlv.encode_tlv(b"\xd0", details + devices)


class ProactiveSession:
    """The card's proactive state: at most one outstanding command (rules 1-7)."""

    def __init__(self) -> None:
        self._command: bytes | None = None  # the outstanding command
        self._details = b""  # its command details value (number, type, qualifier)
        self._fetched = False
        self._number = 0
        self.terminal_profile = b""

    @property
    def busy(self) -> bool:
        """Whether a proactive command is outstanding (queued or fetched, not answered)."""
        return self._command is not None

    @property
    def pending(self) -> bytes | None:
        """The command waiting for FETCH, if any."""
        return None if self._fetched else self._command

    def queue_refresh(self, qualifier: int = REFRESH_UICC_RESET) -> None:
        """Make a REFRESH the outstanding command (rule 1)."""
        self._number = self._number % 254 + 1
        self._command = refresh_command(self._number, qualifier)
        self._details = bytes((self._number, TYPE_REFRESH, qualifier))
        self._fetched = False

    def indication(self) -> bytes | None:
        """``91 xx`` while a command waits for FETCH (rule 4), else None."""
        command = self.pending
        if command is None:
            return None
        return bytes((0x91, len(command)))

    def fetch(self, le: int | None) -> bytes:
        """FETCH (rule 5): the command followed by ``90 00``."""
        command = self.pending
        if command is None:
            raise StatusWordError(SW_CONDITIONS_NOT_SATISFIED)
        if le is not None and le < len(command):
            return bytes((0x6C, len(command)))
        self._fetched = True
        return command + b"\x90\x00"

    def terminal_response(self, data: bytes) -> None:
        """TERMINAL RESPONSE (rule 6)."""
        if not data:
            raise StatusWordError(SW_WRONG_LENGTH)
        details = None
        try:
            for item in tlv.iter_tlvs(data):
                if item.tag in _COMMAND_DETAILS_TAGS and details is None:
                    details = item.value(data)
        except tlv.TlvError:
            raise StatusWordError(SW_INCORRECT_DATA) from None
        if self._command is None or not self._fetched:
            raise StatusWordError(SW_CONDITIONS_NOT_SATISFIED)
        if details != self._details:
            raise StatusWordError(SW_INCORRECT_DATA)
        self._command = None
        self._fetched = False

    def set_terminal_profile(self, data: bytes) -> None:
        """TERMINAL PROFILE (rule 7)."""
        if not data:
            raise StatusWordError(SW_WRONG_LENGTH)
        self.terminal_profile = bytes(data)

    def reset(self) -> None:
        """Card reset or power off: every outstanding command is gone."""
        self._command = None
        self._fetched = False
        self.terminal_profile = b""
