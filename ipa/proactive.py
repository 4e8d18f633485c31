"""Proactive commands as the IPAd meets them: the REFRESH a card sends after a profile switch
(ETSI TS 102 223 §6.4.7, §6.6.13), and the TERMINAL RESPONSE the terminal answers with.

The codec is :mod:`euicc_protocol.cat`; here a malformed FETCH answer is the IPAd's
:class:`~ipa.errors.CardProtocolError`. :class:`ipa.channel.Es10Channel` does the APDUs
(FETCH, TERMINAL RESPONSE, the reset through the transport).
"""

from __future__ import annotations

from euicc_protocol import cat
from euicc_protocol.cat import (
    REFRESH,
    REFRESH_EUICC_PROFILE_STATE_CHANGE,
    REFRESH_UICC_RESET,
    RESULT_BEYOND_TERMINAL_CAPABILITIES,
    RESULT_OK,
    RESULT_TERMINAL_UNABLE,
    ProactiveCommand,
    terminal_response,
)
from ipa.errors import CardProtocolError

__all__ = [
    "REFRESH",
    "REFRESH_EUICC_PROFILE_STATE_CHANGE",
    "REFRESH_UICC_RESET",
    "RESULT_BEYOND_TERMINAL_CAPABILITIES",
    "RESULT_OK",
    "RESULT_TERMINAL_UNABLE",
    "ProactiveCommand",
    "parse_proactive_command",
    "terminal_response",
]


def parse_proactive_command(data: bytes) -> ProactiveCommand:
    """Read a FETCH answer (:func:`euicc_protocol.cat.parse_proactive_command`).

    Raises:
        CardProtocolError: not one proactive command TLV with its command details.
    """
    try:
        return cat.parse_proactive_command(data)
    except cat.ProactiveFormatError as exc:
        raise CardProtocolError(str(exc)) from None
