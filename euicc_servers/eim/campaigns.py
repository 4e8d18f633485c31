"""Device groups and campaigns: one order for many eUICCs, rolled out in waves.

The decisions are :func:`.campaign_engine.decide`'s; this module keeps campaigns in the eIM
store (tables ``campaigns`` and ``campaign_members``), picks their devices and applies the
decisions. :meth:`Campaigns.tick` is what the scheduler (:mod:`.app`) calls.

Rules
=====

1. Selectors: ``"all"`` (or ``{"all": true}``), ``{"eids": [...]}`` (registered EIDs), or
   ``{"labels": {"key": "value", ...}}`` (every label must match). Labels are the operator's
   (set at registration or with ``PATCH``).
2. A device is a member of a campaign at most once (primary key (campaign, EID)), and a
   member's order is queued in the same transaction that records it: an operation is never
   queued twice for a device, across restarts too.
3. ``follow``: devices registered (or labelled) later that match join the campaign at the
   next tick, unless it is stopped.
4. Everything is in the eIM's SQLite file: a restarted eIM carries on where it was (wave
   times are wall-clock seconds).
5. Every state change and every wave is published on the northbound feed (``campaign.*``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import packages
from .campaign_engine import (
    CampaignState,
    EngineView,
    Member,
    MemberStatus,
    Rollout,
    decide,
)
from .profile_state import operation_failed
from .store import Conflict, EimStore, NotFound, OrderState, now

if TYPE_CHECKING:
    from .esipa import EimCore

__all__ = ["CampaignError", "Campaigns", "Selector", "parse_rollout"]

log = logging.getLogger(__name__)

_ROLLOUT_FIELDS = {
    "batchSize": ("batch_size", int),
    "pauseSeconds": ("pause", float),
    "maxFailures": ("max_failures", int),
    "maxFailureRate": ("max_failure_rate", float),
    "minResults": ("min_results", int),
    "waveTimeoutSeconds": ("wave_timeout", float),
}
_MAX_LABELS = 32


class CampaignError(ValueError):
    """A campaign, selector, rollout or label set is invalid."""


def parse_labels(value: Any) -> dict[str, str]:
    """Validated labels: a JSON object of at most 32 short string keys and values."""
    if not isinstance(value, dict) or len(value) > _MAX_LABELS:
        raise CampaignError(f"labels must be an object of at most {_MAX_LABELS} entries")
    for key, item in value.items():
        if not (isinstance(key, str) and 0 < len(key) <= 64 and isinstance(item, str)):
            raise CampaignError("labels: keys are 1..64 characters, values strings")
        if len(item) > 256:
            raise CampaignError("labels: values are at most 256 characters")
    return dict(value)


@dataclass(frozen=True)
class Selector:
    """Which devices a campaign targets (rule 1)."""

    everything: bool = False
    eids: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: Any) -> Selector:
        """The selector of the API's ``select``.

        Raises:
            CampaignError: not one of the three forms.
        """
        if value == "all" or value == {"all": True}:
            return cls(everything=True)
        if isinstance(value, dict) and len(value) == 1:
            if "eids" in value:
                eids = value["eids"]
                if not (isinstance(eids, list) and eids and all(isinstance(e, str) for e in eids)):
                    raise CampaignError("select.eids must be a non-empty list of EIDs")
                return cls(eids=tuple(dict.fromkeys(e.upper() for e in eids)))
            if "labels" in value:
                labels = parse_labels(value["labels"])
                if not labels:
                    raise CampaignError("select.labels must name at least one label")
                return cls(labels=tuple(sorted(labels.items())))
        raise CampaignError('select must be "all", {"eids": [...]} or {"labels": {...}}')

    def matches(self, eid: str, labels: dict[str, str] | None) -> bool:
        """Whether the eUICC ``eid`` with ``labels`` is selected."""
        if self.everything:
            return True
        if self.eids:
            return eid in self.eids
        have = labels or {}
        return all(have.get(k) == v for k, v in self.labels)

    def to_json(self) -> Any:
        """The API form."""
        if self.everything:
            return "all"
        if self.eids:
            return {"eids": list(self.eids)}
        return {"labels": dict(self.labels)}


def parse_rollout(value: Any) -> Rollout:
    """The :class:`Rollout` of the API's ``rollout`` object (absent: one wave of all).

    Raises:
        CampaignError: unknown field or bad value.
    """
    if value is None:
        return Rollout(batch_size=1_000_000)
    if not isinstance(value, dict):
        raise CampaignError("rollout must be an object")
    unknown = sorted(set(value) - set(_ROLLOUT_FIELDS))
    if unknown:
        raise CampaignError(f"rollout: unknown field(s) {', '.join(unknown)}")
    options: dict[str, Any] = {}
    for name, item in value.items():
        attribute, kind = _ROLLOUT_FIELDS[name]
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise CampaignError(f"rollout.{name} must be a number")
        if kind is int and not isinstance(item, int):
            raise CampaignError(f"rollout.{name} must be an integer")
        options[attribute] = kind(item)
    options.setdefault("batch_size", 1_000_000)
    try:
        return Rollout(**options)
    except ValueError as exc:
        raise CampaignError(f"rollout: {exc}") from None


def _rollout_from_json(text: str) -> Rollout:
    return parse_rollout(json.loads(text))


def _status(order_state: str | None, report: str | None, result: str | None) -> MemberStatus:
    """A member's status from its order (rule 2 of the engine); a done order whose verified
    result reports a failed operation (``enableResult`` not ok, ...) counts as failed."""
    if order_state is None:
        return MemberStatus.WAITING
    if order_state == OrderState.DONE and result and operation_failed(json.loads(result)):
        return MemberStatus.FAILED
    if order_state == OrderState.SENT and report is not None:
        return MemberStatus.UNVERIFIED
    return MemberStatus(order_state)


_MEMBERS_SQL = (
    "SELECT m.eid, m.wave, m.order_id, o.state, o.report, o.result_json, o.error, o.verified "
    "FROM campaign_members m LEFT JOIN orders o ON o.id = m.order_id "
    "WHERE m.campaign = ? ORDER BY m.seq"
)


class Campaigns:
    """The campaigns of one eIM (``core.campaigns``): the Python API behind
    ``/api/campaigns``. ``clock`` gives wall-clock seconds (rule 4)."""

    def __init__(self, core: EimCore, clock: Any = time.time) -> None:
        self.core = core
        self.clock = clock

    @property
    def store(self) -> EimStore:
        """The eIM store the campaigns live in."""
        return self.core.store

    # -- operations -----------------------------------------------------------------------

    def create(
        self,
        name: str,
        select: Any,
        order: Any,
        rollout: Any = None,
        *,
        follow: bool = False,
    ) -> dict[str, Any]:
        """Start a campaign; returns its view (:meth:`get`). The first wave is queued at once.

        Raises:
            CampaignError: invalid name, selector or rollout; EIDs that are not registered.
            PackageError: invalid order.
        """
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise CampaignError("name must be 1..128 characters")
        if not isinstance(follow, bool):
            raise CampaignError("follow must be true or false")
        selector = Selector.parse(select)
        plan = rollout if isinstance(rollout, Rollout) else parse_rollout(rollout)
        kind, request = packages.validate_order(order)
        if selector.eids and not follow:
            missing = [e for e in selector.eids if self.store.euicc(e) is None]
            if missing:
                raise CampaignError(f"not registered: {', '.join(missing[:5])}")
        stamp = now()
        with self.store.transaction():
            cursor = self.store.execute(
                "INSERT INTO campaigns (name, selector, kind, request, rollout, follow, state, "
                "wave, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    name,
                    json.dumps(selector.to_json()),
                    kind,
                    json.dumps(request),
                    json.dumps(plan.to_json()),
                    follow,
                    CampaignState.RUNNING.value,
                    stamp,
                    stamp,
                ),
            )
            campaign_id = cursor.lastrowid
            assert campaign_id is not None
            joined = self._join(campaign_id, selector)
            self.store.publish(
                "campaign.created",
                {"id": campaign_id, "name": name, "members": joined, "follow": follow},
            )
        log.info("campaign %d (%s): %d device(s)", campaign_id, name, joined)
        self.advance(campaign_id)
        return self.get(campaign_id)

    def get(self, campaign_id: int, *, devices: bool = True) -> dict[str, Any]:
        """A campaign's state, counts and (``devices``) each device's verified result.

        Raises:
            NotFound: no such campaign.
        """
        row = self._row(campaign_id)
        members = self.store.rows(_MEMBERS_SQL, (campaign_id,))
        counts = {s: 0 for s in ("pending", "sent", "unverified", "done", "failed", "cancelled")}
        listing = []
        for m in members:
            status = _status(m["state"], m["report"], m["result_json"])
            key = "pending" if status in (MemberStatus.WAITING, MemberStatus.QUEUED) else status
            counts[key] += 1
            if devices:
                verified = None if m["verified"] is None else bool(m["verified"])
                settled = m["state"] in (OrderState.DONE, OrderState.FAILED)
                listing.append(
                    {
                        "eid": m["eid"],
                        "wave": m["wave"],
                        "orderId": m["order_id"],
                        "status": status.value,
                        "signatureVerified": verified,
                        "result": json.loads(m["result_json"])
                        if settled and m["result_json"]
                        else None,
                        "error": m["error"],
                        "unverifiedReport": m["report"],
                    }
                )
        view = {
            "id": row["id"],
            "name": row["name"],
            "state": row["state"],
            "reason": row["reason"],
            "select": json.loads(row["selector"]),
            "order": {"type": row["kind"], **json.loads(row["request"])},
            "rollout": json.loads(row["rollout"]),
            "follow": bool(row["follow"]),
            "wave": row["wave"],
            "total": len(members),
            "counts": counts,
            "created": row["created"],
            "updated": row["updated"],
        }
        if devices:
            view["devices"] = listing
        return view

    def list(self) -> list[dict[str, Any]]:
        """Every campaign, oldest first, with counts (no per-device list)."""
        ids = [r["id"] for r in self.store.rows("SELECT id FROM campaigns ORDER BY id")]
        return [self.get(i, devices=False) for i in ids]

    def pause(self, campaign_id: int) -> dict[str, Any]:
        """Start no further wave (orders queued already stay queued).

        Raises:
            NotFound: no such campaign. Conflict: it is not running.
        """
        self._transition(campaign_id, {CampaignState.RUNNING}, CampaignState.PAUSED, "paused")
        return self.get(campaign_id)

    def resume(self, campaign_id: int) -> dict[str, Any]:
        """Carry on with a paused campaign.

        Raises:
            NotFound: no such campaign. Conflict: it is not paused.
        """
        self._transition(campaign_id, {CampaignState.PAUSED}, CampaignState.RUNNING, None)
        self.advance(campaign_id)
        return self.get(campaign_id)

    def abort(self, campaign_id: int) -> dict[str, Any]:
        """Stop for good: queued orders not delivered yet are cancelled.

        Raises:
            NotFound: no such campaign. Conflict: it is stopped, or done without ``follow``.
        """
        row = self._row(campaign_id)
        allowed = {CampaignState.RUNNING, CampaignState.PAUSED}
        if row["follow"]:
            allowed.add(CampaignState.DONE)
        with self.store.transaction():
            self._transition(campaign_id, allowed, CampaignState.STOPPED, "aborted by the operator")
            self._cancel_queued(campaign_id)
        return self.get(campaign_id)

    # -- the scheduler's step --------------------------------------------------------------

    def tick(self) -> None:
        """Advance every campaign that can move (the scheduler calls this periodically)."""
        rows = self.store.rows(
            "SELECT id FROM campaigns WHERE state IN (?, ?) OR (state = ? AND follow)",
            (CampaignState.RUNNING.value, CampaignState.PAUSED.value, CampaignState.DONE.value),
        )
        for row in rows:
            self.advance(row["id"])

    def advance(self, campaign_id: int) -> None:
        """Join new devices of a following campaign and apply the engine's decision."""
        with self.store.transaction():
            row = self._row(campaign_id)
            if row["state"] == CampaignState.STOPPED:
                return
            if row["follow"]:
                self._join(campaign_id, Selector.parse(json.loads(row["selector"])))
            members = [
                Member(m["eid"], m["wave"], _status(m["state"], m["report"], m["result_json"]))
                for m in self.store.rows(_MEMBERS_SQL, (campaign_id,))
            ]
            view = EngineView(
                CampaignState(row["state"]),
                _rollout_from_json(row["rollout"]),
                follow=bool(row["follow"]),
                wave=row["wave"],
                wave_started=row["wave_started"],
                wave_closed=row["wave_closed"],
            )
            decision = decide(view, members, self.clock())
            request = json.loads(row["request"])
            for eid in decision.queue:
                order = self.store.add_order(
                    eid, row["kind"], request, origin="campaign", campaign=campaign_id
                )
                self.store.execute(
                    "UPDATE campaign_members SET wave = ?, order_id = ? "
                    "WHERE campaign = ? AND eid = ? AND order_id IS NULL",
                    (decision.wave, order.id, campaign_id, eid),
                )
            if decision.queue:
                self.store.publish(
                    "campaign.wave",
                    {"id": campaign_id, "wave": decision.wave, "eids": list(decision.queue)},
                )
                log.info(
                    "campaign %d: wave %d, %d device(s)",
                    campaign_id,
                    decision.wave,
                    len(decision.queue),
                )
            self.store.execute(
                "UPDATE campaigns SET wave = ?, wave_started = ?, wave_closed = ? WHERE id = ?",
                (decision.wave, decision.wave_started, decision.wave_closed, campaign_id),
            )
            if decision.state != row["state"]:
                self._set_state(campaign_id, decision.state, decision.reason)
            if decision.cancel_queued:
                self._cancel_queued(campaign_id)

    # -- internals -------------------------------------------------------------------------

    def _row(self, campaign_id: int) -> Any:
        rows = self.store.rows("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        if not rows:
            raise NotFound(f"no campaign {campaign_id}")
        return rows[0]

    def _join(self, campaign_id: int, selector: Selector) -> int:
        """Add the registered devices ``selector`` picks that are not members yet (rule 2)."""
        present = {
            r["eid"]
            for r in self.store.rows(
                "SELECT eid FROM campaign_members WHERE campaign = ?", (campaign_id,)
            )
        }
        rows = self.store.rows(
            "SELECT COALESCE(MAX(seq), 0) AS top FROM campaign_members WHERE campaign = ?",
            (campaign_id,),
        )
        seq = int(rows[0]["top"])
        stamp = now()
        added = 0
        # Registration order; an explicit list joins in its own order.
        registered = [
            (r["eid"], json.loads(r["labels"]) if r["labels"] else None)
            for r in self.store.rows("SELECT eid, labels FROM euiccs ORDER BY rowid")
        ]
        if selector.eids:
            rank = {eid: i for i, eid in enumerate(selector.eids)}
            registered = sorted((r for r in registered if r[0] in rank), key=lambda r: rank[r[0]])
        for eid, labels in registered:
            if eid in present or not selector.matches(eid, labels):
                continue
            seq += 1
            self.store.execute(
                "INSERT OR IGNORE INTO campaign_members (campaign, eid, seq, wave, order_id, "
                "joined) VALUES (?, ?, ?, 0, NULL, ?)",
                (campaign_id, eid, seq, stamp),
            )
            added += 1
        if added and present:
            self.store.publish("campaign.joined", {"id": campaign_id, "added": added})
        return added

    def _transition(
        self,
        campaign_id: int,
        allowed: set[CampaignState],
        target: CampaignState,
        reason: str | None,
    ) -> None:
        with self.store.transaction():
            row = self._row(campaign_id)
            if CampaignState(row["state"]) not in allowed:
                raise Conflict(f"campaign {campaign_id} is {row['state']}")
            self._set_state(campaign_id, target, reason)

    def _set_state(self, campaign_id: int, state: CampaignState, reason: str | None) -> None:
        self.store.execute(
            "UPDATE campaigns SET state = ?, reason = ?, updated = ? WHERE id = ?",
            (state.value, reason, now(), campaign_id),
        )
        counts = self.get(campaign_id, devices=False)["counts"]
        self.store.publish(
            f"campaign.{state.value}",
            {"id": campaign_id, "state": state.value, "reason": reason, "counts": counts},
        )
        log.info("campaign %d: %s%s", campaign_id, state.value, f" ({reason})" if reason else "")

    def _cancel_queued(self, campaign_id: int) -> None:
        for order in self.store.orders(states=[OrderState.QUEUED]):
            if order.campaign == campaign_id:
                self.store.update_order(order.id, state=OrderState.CANCELLED)
