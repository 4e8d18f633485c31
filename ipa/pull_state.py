"""What the IPAd's pull flow (:mod:`ipa.pull`) keeps and what it reports.

Results for the eIM (:class:`PendingResult`) are persisted in ``<state_dir>/ipad-state.json``
(:data:`STATE_FILE`) from the moment they exist until the eIM took them, with the EID, the eIM
polled, a state change not yet reported and the ICCID last seen enabled. The file is JSON,
replaced atomically (write, fsync, rename); a damaged one is logged and ignored. Without a
state directory the state lives in memory. :class:`PackageOutcome` says what became of each
eIM package in a cycle.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipa.esipa import EimPackageKind

__all__ = ["STATE_FILE", "PackageOutcome", "PendingResult", "SavedState", "StateFile"]

log = logging.getLogger(__name__)

#: Name of the IPAd's state file inside the state directory.
STATE_FILE = "ipad-state.json"
_STATE_VERSION = 1


@dataclass
class PendingResult:
    """A result for the eIM not yet taken: the EimPackageResult alternative TLV, the card's
    seqNumbers to remove once it is, and whether a rollback-flagged enable switched the
    profile (so ProfileRollback is the way out if it cannot be delivered)."""

    result: bytes
    remove: tuple[int, ...] = ()
    rollback: bool = False
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result.hex().upper(),
            "remove": list(self.remove),
            "rollback": self.rollback,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PendingResult:
        return cls(
            bytes.fromhex(d["result"]),
            tuple(int(s) for s in d.get("remove", ())),
            bool(d.get("rollback", False)),
            float(d.get("created", 0.0)),
        )


@dataclass
class SavedState:
    """Everything the state file holds (see the module docstring)."""

    eid: str | None = None
    eim_id: str | None = None
    pending: list[PendingResult] = field(default_factory=list)
    state_change_cause: int | None = None
    enabled_iccid: str | None = None  # "" = none enabled; None = never looked


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
                [PendingResult.from_json(p) for p in d.get("pendingResults", [])],
                d.get("stateChangeCause"),
                d.get("enabledIccid"),
            )
        except (ValueError, KeyError, TypeError) as exc:
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
            "pendingResults": [p.to_json() for p in saved.pending],
            "stateChangeCause": saved.state_change_cause,
            "enabledIccid": saved.enabled_iccid,
        }
        tmp = self.path.with_name(STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass(frozen=True, slots=True)
class PackageOutcome:
    """What became of one eIM package (or of a result re-sent from an earlier cycle, ``kind``
    None).

    Attributes:
        kind: the package kind.
        result: the EimPackageResult alternative sent (``BF51``, ``30``, ``BF52``, ``BF54``,
            ``A0``).
        delivered: the eIM took it.
        acknowledged: seqNumbers the eIM acknowledged with it.
        rolled_back: ProfileRollback replaced the result.
        detail: a short human-readable summary.
        refused: the eIM answered the result with an error (it is not sent again).
    """

    kind: EimPackageKind | None
    result: bytes
    delivered: bool
    acknowledged: tuple[int, ...] = ()
    rolled_back: bool = False
    detail: str = ""
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the result in hex)."""
        return {
            "kind": self.kind.value if self.kind is not None else None,
            "result": self.result.hex().upper(),
            "delivered": self.delivered,
            "acknowledged": list(self.acknowledged),
            "rolledBack": self.rolled_back,
            "detail": self.detail,
        }

    @property
    def kept(self) -> bool:
        """Whether the result is still pending (to be sent again next cycle)."""
        return not self.delivered and not self.refused
