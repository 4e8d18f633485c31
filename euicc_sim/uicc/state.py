"""What the UICC side of one profile remembers across power cycles, and its encoding.

Kept per profile as one blob (JSON, referenced from the profile's ``uicc_digest``): the
contents of the files the terminal changed, the PIN and PUK values, retry counters and
enabled flags, and the SQN arrays of the AKA applications. Everything else is rebuilt from
the profile package at every reset. Verification status is volatile (ETSI TS 102 221 §9.5:
it ends with the card session) and is never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .pins import Pin, Puk

FORMAT = 1


class UiccStateError(ValueError):
    """A stored UICC state blob is damaged or of an unknown format."""


@dataclass
class UiccState:
    """The changeable part of one profile's UICC side."""

    files: dict[str, bytes] = field(default_factory=dict)  # content key -> content
    pins: dict[tuple[str, int], Pin] = field(default_factory=dict)  # (DF key, key ref)
    puks: dict[int, Puk] = field(default_factory=dict)
    sqn: dict[str, tuple[int, ...]] = field(default_factory=dict)  # ADF key -> SEQ array

    def copy(self) -> UiccState:
        """A shallow copy whose dictionaries can be changed independently."""
        return UiccState(dict(self.files), dict(self.pins), dict(self.puks), dict(self.sqn))


def encode(state: UiccState, changed_files: set[str]) -> bytes:
    """The blob for ``state``, with the contents of ``changed_files`` only."""
    doc = {
        "format": FORMAT,
        "files": {k: state.files[k].hex() for k in sorted(changed_files)},
        "pins": {
            f"{ctx}|{ref}": [p.value.hex(), p.retries, p.enabled]
            for (ctx, ref), p in sorted(state.pins.items())
        },
        "puks": {str(ref): [p.value.hex(), p.retries] for ref, p in sorted(state.puks.items())},
        "sqn": {k: list(v) for k, v in sorted(state.sqn.items())},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_into(blob: bytes, base: UiccState) -> tuple[UiccState, set[str]]:
    """``base`` (the package's initial state) with a stored blob applied on top."""
    try:
        doc = json.loads(blob)
        if doc.get("format") != FORMAT:
            raise UiccStateError(f"unknown UICC state format {doc.get('format')!r}")
        state = base.copy()
        changed: set[str] = set()
        for key, content in doc["files"].items():
            if key in state.files:
                state.files[key] = bytes.fromhex(content)
                changed.add(key)
        for name, (value, retries, enabled) in doc["pins"].items():
            ctx, ref = name.rsplit("|", 1)
            pin = state.pins.get((ctx, int(ref)))
            if pin is not None:
                state.pins[(ctx, int(ref))] = Pin(
                    bytes.fromhex(value), int(retries), pin.max_attempts, bool(enabled), pin.puk_ref
                )
        for ref, (value, retries) in doc["puks"].items():
            puk = state.puks.get(int(ref))
            if puk is not None:
                state.puks[int(ref)] = Puk(bytes.fromhex(value), int(retries), puk.max_attempts)
        for key, array in doc["sqn"].items():
            if key in state.sqn and len(array) == len(state.sqn[key]):
                state.sqn[key] = tuple(int(v) for v in array)
        return state, changed
    except UiccStateError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UiccStateError(f"damaged UICC state: {exc!r}") from exc
