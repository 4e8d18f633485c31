"""Access rules in the expanded format (ETSI TS 102 221 §9.2.4, ISO/IEC 7816-4 §5.4.3.3).

A record of EF.ARR is a list of access mode data objects (``80`` AM byte, ``84`` command
header) each followed by the security condition data objects that govern it:

* ``90 00`` always, ``97 00`` never;
* ``A4 { 83 01 <key reference>, 95 01 <usage qualifier> }`` user verification with that PIN;
* ``A0 { SC_DO* }`` any one of them (OR), ``AF { SC_DO* }`` all of them (AND).

An operation is allowed when the first access mode that covers it has a condition that
holds; no access mode covering it means never. Operations checked here (AM byte bits for an
EF): b1 READ (READ BINARY/RECORD, SEARCH RECORD), b2 UPDATE (UPDATE BINARY/RECORD). A key
reference holds when the PIN is verified in this session or its verification is disabled.
"""

from __future__ import annotations

from collections.abc import Callable

READ = 0x01
UPDATE = 0x02

KeyCheck = Callable[[int], bool]


def _tlvs(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 2 <= len(data):
        tag = data[pos]
        if tag in (0x00, 0xFF):  # padding of the record
            break
        length = data[pos + 1]
        if length & 0x80 or pos + 2 + length > len(data):
            break  # malformed: the rest counts as absent (never)
        out.append((tag, data[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return out


def _holds(tag: int, value: bytes, key_ok: KeyCheck) -> bool:
    if tag == 0x90:
        return True
    if tag == 0x97:
        return False
    if tag == 0xA4:
        refs = [v[0] for t, v in _tlvs(value) if t == 0x83 and len(v) == 1]
        return bool(refs) and all(key_ok(r) for r in refs)
    if tag == 0xA0:
        return any(_holds(t, v, key_ok) for t, v in _tlvs(value))
    if tag == 0xAF:
        inner = _tlvs(value)
        return bool(inner) and all(_holds(t, v, key_ok) for t, v in inner)
    return False


def allowed(rule: bytes, mode: int, key_ok: KeyCheck) -> bool:
    """Whether the access rule (one EF.ARR record) allows operation ``mode`` (AM bit)."""
    items = _tlvs(rule)
    i = 0
    while i < len(items):
        tag, value = items[i]
        i += 1
        if tag not in (0x80, 0x84):
            continue
        conditions = []
        while i < len(items) and items[i][0] not in (0x80, 0x84):
            conditions.append(items[i])
            i += 1
        if tag == 0x80 and value and value[0] & 0x80 == 0 and value[0] & mode:
            return any(_holds(t, v, key_ok) for t, v in conditions)
    return False
