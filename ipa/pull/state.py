"""What the IPAd's pull flow keeps across cycles and restarts (:mod:`ipa.pull`).

Results for the eIM (:class:`PendingResult`) are persisted in ``<state_dir>/ipad-state.json``
(:data:`STATE_FILE`) from the moment they exist until the eIM took them, with the EID, the eIM
polled, the notifications the eIM keeps refusing (:class:`SetAsideNotification`), a state
change not yet reported and the ICCID last seen enabled. The file is JSON, replaced atomically
(write, fsync, rename); a damaged one is logged and ignored. Without a state directory the
state lives in memory.

Every object here is immutable: the pull rules (:mod:`ipa.pull.rules`) compute a new
:class:`SavedState` and the driver writes it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["STATE_FILE", "PendingResult", "SavedState", "SetAsideNotification", "StateFile"]

log = logging.getLogger(__name__)

#: Name of the IPAd's state file inside the state directory.
STATE_FILE = "ipad-state.json"
_STATE_VERSION = 2  # 2: attempts / setAside / setAsideNotifications (version 1 files still load)


@dataclass(frozen=True, slots=True)
class PendingResult:
    """A result for the eIM not yet taken.

    Attributes:
        result: the EimPackageResult alternative TLV, in the SGP.32 version it was made for.
        remove: the card's seqNumbers to remove once the eIM took it.
        rollback: a rollback-flagged enable switched the profile (ProfileRollback is the way
            out if it cannot be delivered).
        created: when it was made (the flow's clock).
        attempts: deliveries that failed so far (every cycle counted).
        set_aside: the eIM kept refusing it; it is retried once per later cycle, after the
            others, and no longer holds up polling.
    """

    result: bytes
    remove: tuple[int, ...] = ()
    rollback: bool = False
    created: float = 0.0
    attempts: int = 0
    set_aside: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the result in hex)."""
        return {
            "result": self.result.hex().upper(),
            "remove": list(self.remove),
            "rollback": self.rollback,
            "created": self.created,
            "attempts": self.attempts,
            "setAside": self.set_aside,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PendingResult:
        """The inverse of :meth:`to_json`."""
        return cls(
            bytes.fromhex(d["result"]),
            tuple(int(s) for s in d.get("remove", ())),
            bool(d.get("rollback", False)),
            float(d.get("created", 0.0)),
            int(d.get("attempts", 0)),
            bool(d.get("setAside", False)),
        )


@dataclass(frozen=True, slots=True)
class SetAsideNotification:
    """A notification (or a result stored on the card) the eIM kept refusing: it stays on the
    card, and the IPAd tries it once per later cycle."""

    seq_number: int
    attempts: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"seqNumber": self.seq_number, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class SavedState:
    """Everything the state file holds (see the module docstring)."""

    eid: str | None = None
    eim_id: str | None = None
    pending: tuple[PendingResult, ...] = ()
    state_change_cause: int | None = None
    enabled_iccid: str | None = None  # "" = none enabled; None = never looked
    notifications: tuple[SetAsideNotification, ...] = ()
    sgp32: str | None = None  # the SGP.32 version spoken with the eIM when the results were made


class StateFile:
    """The state file: JSON, replaced atomically (write, fsync, rename)."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.path = None if directory is None else Path(directory) / STATE_FILE

    def load(self) -> SavedState:
        """What the file holds; an empty state when there is none or it cannot be read."""
        if self.path is None or not self.path.exists():
            return SavedState()
        try:
            d = json.loads(self.path.read_text("utf-8"))
            return SavedState(
                d.get("eid"),
                d.get("eimId"),
                tuple(PendingResult.from_json(p) for p in d.get("pendingResults", [])),
                d.get("stateChangeCause"),
                d.get("enabledIccid"),
                tuple(
                    SetAsideNotification(int(n["seqNumber"]), int(n.get("attempts", 0)))
                    for n in d.get("setAsideNotifications", [])
                ),
                d.get("sgp32"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A damaged file must not stop the device; what it held is lost (and logged).
            log.error("ignoring unreadable state file %s: %s", self.path, exc)
            return SavedState()

    def save(self, saved: SavedState) -> None:
        """Replace the file's content with ``saved`` (nothing without a state directory)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": _STATE_VERSION,
            "eid": saved.eid,
            "eimId": saved.eim_id,
            "sgp32": saved.sgp32,
            "pendingResults": [p.to_json() for p in saved.pending],
            "setAsideNotifications": [n.to_json() for n in saved.notifications],
            "stateChangeCause": saved.state_change_cause,
            "enabledIccid": saved.enabled_iccid,
        }
        tmp = self.path.with_name(STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
