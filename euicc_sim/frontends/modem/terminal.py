"""The terminal's side of a proactive session (ETSI TS 102 223 §6), as far as a modem needs it.

A card that has a proactive command for the terminal ends a response with ``91 xx`` (TS 102
221 §10.2.1.2): ``xx`` bytes wait for FETCH (``80 12 00 00 xx``). The command is a BER-TLV
``D0`` holding Command details (``81 03 <number> <type> <qualifier>``), Device identities
(``82 02 81 82``: from the UICC to the terminal) and its own objects. The terminal acts and
answers with TERMINAL RESPONSE (``80 14 00 00 Lc``): Command details as received, Device
identities ``82 02 82 81`` and a Result (``83 01 <general result>``).

REFRESH (type ``01``, §6.4.7) is the one command the emulated modem carries out. How it acts
on each qualifier (§8.6):

* ``04`` UICC Reset and ``09`` eUICC Profile State Change: the terminal resets the card. A
  reset ends the proactive session, so no TERMINAL RESPONSE is sent; the card learns the
  command was carried out from the reset itself.
* every other mode (NAA initialisation, file change notification, NAA application or session
  reset, steering of roaming, application update): TERMINAL RESPONSE "command performed
  successfully" (``00``); the modem then re-reads what it caches (nothing here).

Any other proactive command gets "command beyond terminal's capabilities" (``30``). The codec
is :mod:`euicc_protocol.cat`, shared with the IPAd.
"""

from __future__ import annotations

from euicc_protocol.cat import (
    REFRESH,
    RESET_QUALIFIERS,
    RESULT_OK,
    ProactiveCommand,
    ProactiveFormatError,
    fetch_apdu,
    parse_proactive_command,
    terminal_response_apdu,
)
from euicc_protocol.cat import RESULT_BEYOND_TERMINAL_CAPABILITIES as RESULT_BEYOND_CAPABILITIES

__all__ = [
    "REFRESH",
    "RESET_QUALIFIERS",
    "RESULT_BEYOND_CAPABILITIES",
    "RESULT_OK",
    "ProactiveCommand",
    "ProactiveFormatError",
    "fetch_apdu",
    "parse_proactive_command",
    "terminal_response_apdu",
]
