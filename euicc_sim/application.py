"""The contract between the card OS and the applications it hosts (ISD-R, ECASD)."""

from __future__ import annotations

from typing import Protocol


class Application(Protocol):
    """A selectable application on the card.

    The card OS owns APDU framing, logical channels, STORE DATA reassembly and GET RESPONSE
    buffering; an application only sees whole requests. Methods must not raise for bad
    input: the card OS turns an escaping exception into ``6F 00`` as a last resort.
    """

    #: The application's AID (full 16 bytes for ISD-R / ECASD).
    aid: bytes

    def select_response(self) -> bytes:
        """The FCI template (``6F ...``) returned on SELECT by AID."""
        ...

    def store_data(self, channel: int, request: bytes) -> bytes:
        """Process one complete, reassembled STORE DATA payload; return response data.

        Returns the response TLV (possibly empty). Raising
        :class:`euicc_sim.apdu.StatusWordError` makes the card OS answer with that status
        word instead (for transport-level failures such as an unparseable request).
        """
        ...

    def reset(self) -> None:
        """Card reset or power cycle: drop volatile sessions."""
        ...

    def channel_closed(self, channel: int) -> None:
        """A logical channel on which this application was selected has been closed."""
        ...
