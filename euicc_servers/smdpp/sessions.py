"""The SM-DP+'s download sessions, kept in memory by transactionId (:class:`Session`, in a
:class:`Phase` of the table in :mod:`.es9p`) and forgotten after a timeout on an injectable
clock (:class:`SessionStore`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from .config import DpCredentials
from .orders import ProfileSource
from .received import hex_upper

__all__ = ["Phase", "Session", "SessionStore"]


class Phase(enum.Enum):
    """Where a download session stands (see the table in :mod:`.es9p`)."""

    INITIATED = "initiated"
    AUTHENTICATED = "authenticated"
    REFUSED = "refused"
    BOUND = "bound"


@dataclass(eq=False, repr=False)
class Session:
    """One RSP session, from initiateAuthentication to the ProfileInstallationResult."""

    transaction_id: bytes
    server_challenge: bytes
    credentials: DpCredentials
    touched: float
    phase: Phase = Phase.INITIATED
    eid: str | None = None
    euicc_key: ec.EllipticCurvePublicKey | None = None
    matching_id: str | None = None
    smdp_signature2: bytes = b""  # complete 5F37 TLV, part of what euiccSignature2 covers
    store_metadata: bytes = b""
    source: ProfileSource | None = None
    euicc_otpk: bytes | None = None
    bpp: bytes | None = None

    def __repr__(self) -> str:
        return f"Session({hex_upper(self.transaction_id)}, {self.phase.value}, eid={self.eid})"


class SessionStore:
    """Sessions by transactionId with an inactivity timeout on an injectable clock."""

    def __init__(self, timeout: float, clock: Callable[[], float]) -> None:
        self.timeout = timeout
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def now(self) -> float:
        """The store's clock."""
        return self._clock()

    def add(self, session: Session) -> None:
        """Start tracking ``session``."""
        self._sessions[session.transaction_id] = session

    def get(self, transaction_id: bytes) -> Session | None:
        """The live session with this transactionId, touched; expired ones are not returned."""
        session = self._sessions.get(transaction_id)
        now = self._clock()
        if session is None or now - session.touched > self.timeout:
            return None
        session.touched = now
        return session

    def peek(self, transaction_id: bytes) -> Session | None:
        """The live session with this transactionId, without counting it as activity."""
        session = self._sessions.get(transaction_id)
        if session is None or self._clock() - session.touched > self.timeout:
            return None
        return session

    def drop(self, transaction_id: bytes) -> Session | None:
        """Forget a session."""
        return self._sessions.pop(transaction_id, None)

    def pop_expired(self) -> list[Session]:
        """Remove and return the sessions that timed out."""
        now = self._clock()
        gone = [s for s in self._sessions.values() if now - s.touched > self.timeout]
        for session in gone:
            del self._sessions[session.transaction_id]
        return gone
