"""Card transports: how the IPAd gets a command APDU to a card and the response back.

A transport is anything with ``transmit(apdu) -> response`` where the response is the
response data followed by SW1 SW2, exactly as ISO/IEC 7816-4 frames it, and ``reset() -> ATR``
which resets the card (cold or warm) or raises :class:`~ipa.errors.CardResetNotSupported`
when the transport cannot. The layers above (:mod:`ipa.channel`, :mod:`ipa.es10`) never look
past that interface, so the same ES10 client runs against the in-process emulator, a PC/SC
reader or a modem. The ES10 channel resets the card through it when the card asks for a
REFRESH after a profile switch (docs/es10-client.md); an object with ``transmit`` only is
still accepted and treated as a transport that cannot reset.

This module holds the interface and the in-process transport. Transports that need optional
dependencies (PC/SC through pyscard) live in their own modules so that importing ``ipa`` never
requires them.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from ipa.errors import CardResetNotSupported

__all__ = ["CardLike", "InProcessTransport", "ResettableTransport", "Transport"]

log = logging.getLogger(__name__)


@runtime_checkable
class Transport(Protocol):
    """What every card transport offers: ``transmit`` (and ``reset``, see
    :class:`ResettableTransport`, which the ES10 channel uses when the card asks for it)."""

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return the response data followed by SW1 SW2."""
        ...


@runtime_checkable
class ResettableTransport(Transport, Protocol):
    """A transport with ``reset``: the full transport interface."""

    def reset(self) -> bytes:
        """Reset the card (cold or warm, the transport decides) and return its ATR.

        Raises:
            CardResetNotSupported: this transport cannot reset the card.
            TransportError: the reset failed.
        """
        ...


class CardLike(Protocol):
    """What :class:`InProcessTransport` needs from a card object (``reset`` is optional)."""

    def transmit(self, apdu: bytes) -> bytes: ...


class InProcessTransport:
    """A transport over any in-process object with ``transmit`` (and optionally ``reset``).

    Typically wraps the emulated card, but any object with the same method works (a scripted
    fake card in tests, a proxy to another process). APDUs and responses are traced at DEBUG
    level in hex on this module's logger.
    """

    __slots__ = ("_card", "_card_transmit")

    def __init__(self, card: CardLike) -> None:
        transmit = getattr(card, "transmit", None)
        if not callable(transmit):
            raise TypeError(f"{type(card).__name__} has no transmit() method")
        self._card = card
        self._card_transmit = transmit

    @property
    def card(self) -> CardLike:
        """The wrapped card object."""
        return self._card

    def transmit(self, apdu: bytes) -> bytes:
        """Send ``apdu`` to the card object and return its response (data + SW1 SW2)."""
        # Formatting hex costs more than the rest of the call; only do it when someone listens.
        trace = log.isEnabledFor(logging.DEBUG)
        if trace:
            log.debug("-> %s", apdu.hex().upper())
        response = self._card_transmit(apdu)
        if trace:
            log.debug("<- %s", bytes(response).hex().upper())
        if type(response) is not bytes:
            response = bytes(response)
        return response

    def reset(self) -> bytes:
        """Reset the card object and return its ATR.

        Raises:
            CardResetNotSupported: the wrapped object has no ``reset()``.
        """
        reset = getattr(self._card, "reset", None)
        if not callable(reset):
            raise CardResetNotSupported(f"{type(self._card).__name__} cannot be reset")
        atr = bytes(reset())
        log.debug("reset, ATR %s", atr.hex().upper())
        return atr
