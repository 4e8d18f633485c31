"""SGP.32 v1.0.1 at the eIM's edge: the ESipa messages of a v1.0.1 IPAd rewritten into their
v1.2 form for the eIM's core, and the core's v1.2 answers rewritten for it (SGP.32 v1.0.1
§6.3.2 against the same functions in v1.2).

Pure functions, bytes in and bytes out. Only the wrappers change: every TLV the eUICC or the
SM-DP+ signed (EuiccPackageResult, ProfileInstallationResult, notifications, certificates)
is carried byte for byte, never decoded and re-encoded.

==================================  =========================================  ==================
message                             v1.0.1                                     v1.2
==================================  =========================================  ==================
GetEimPackageRequest ``BF4F``       ``81`` rPLMN                               ``82`` rPLMN
ProvideEimPackageResult ``BF50``    the CHOICE itself, no eidValue             SEQUENCE {[5A], …}
  ePRAndNotifications               ``30 { BF51, BF2B { A0 … } }``             ``30 { BF51, A0 … }``
  eimPackageError                   ``02 code``                                ``A0 { 02 code }``
  IpaEuiccData                      ``80`` defaultSmdpAddress, ``BF2B`` list   ``81``, ``A0``/``A2``
  ipaEuiccDataError                 ``81 code``                                ``A1 { 02 code }``
  profileDownloadError              ``30 { [80 errorResponse] }``              ``30 { 80 reason,
                                                                               [04 errResp] }``
HandleNotificationEsipa ``BF3D``    ``A1`` replaces ``BF50``                   ``BF50``
ProvideEimPackageResultResponse     SEQUENCE { [BF53] } (``BF50 00``)         CHOICE (``30 00``)
IpaEuiccDataRequest ``BF52``        one ``A1`` criteria {80|81|82 00},         ``A1``/``A2``
                                    v1.0.1 tags, no eimTransactionId           criteria, ``83``
==================================  =========================================  ==================

A v1.0.1 profileDownloadError has no reason: it becomes undefinedError (127). A
ProvideEimPackageResult error the core answers cannot be said in v1.0.1 (its response has no
error alternative): :class:`NotInV1_0` lets the caller answer with an HTTP error instead, so
the IPAd keeps the result rather than deleting it.
"""

from __future__ import annotations

from euicc_protocol import schema, tlv

__all__ = [
    "NotInV1_0",
    "answer_to_v1_0",
    "ask_certificate_with_euicc_info2",
    "looks_v1_0",
    "package_to_v1_0",
    "request_to_v1_2",
]

_UNDEFINED_ERROR = b"\x02\x01\x7f"  # profileDownloadErrorReason undefinedError (127) as [0]
#: v1.2 IpaEuiccData fields in SEQUENCE order.
_IPA_DATA_ORDER = tuple(
    bytes.fromhex(t) for t in ("A0", "81", "A2", "BF20", "BF22", "83", "84", "A5", "A6", "87",
                               "A8", "A9")
)  # fmt: skip
#: v1.2 IpaEuiccData tag → v1.0.1 tag (None: no such field in v1.0.1).
_TAG_TO_V1_0 = {
    b"\xa0": b"\xbf\x2b",
    b"\x81": b"\x80",
    b"\xa2": b"\xbf\x2b",
    b"\x87": None,
}


class NotInV1_0(ValueError):
    """A v1.2 answer that SGP.32 v1.0.1 cannot express."""


def _children(data: bytes, item: tlv.Tlv) -> list[tuple[tlv.Tlv, bytes]]:
    """The children of ``item`` (in ``data``), each with its complete TLV re-based to 0."""
    out = []
    pos = item.value_start
    for child in tlv.iter_tlvs(data, item.value_start, item.value_end):
        raw = bytes(data[pos : child.end])
        out.append((tlv.read_tlv(raw), raw))
        pos = child.end
    return out


def _one(data: bytes) -> tlv.Tlv:
    item = tlv.read_tlv(data)
    if item.end != len(data):
        raise tlv.TlvError("trailing bytes after the message", item.end)
    return item


# -- IPAd → eIM -----------------------------------------------------------------------------------


def looks_v1_0(message: bytes) -> bool | None:
    """Whether an IPAd message has a shape only v1.0.1 gives it (True), only v1.2 (False), or
    one both versions share (None) — for results that arrive without an EID."""
    item = _one(message)
    if item.tag == b"\xbf\x3d":
        ((inner, _),) = _children(message, item)
        return {b"\xa1": True, b"\xbf\x50": False}.get(inner.tag)
    if item.tag != b"\xbf\x50":
        return None
    parts = _children(message, item)
    if not parts or parts[0][0].tag == b"\x5a":
        return False
    tag, raw = parts[0][0].tag, parts[0][1]
    if tag == b"\x02":
        return True
    if tag == b"\xa0":
        return False
    if tag == b"\x30":
        listed = [c.tag for c, _ in _children(raw, tlv.read_tlv(raw))]
        return {b"\xbf\x2b": True, b"\xa0": False}.get(listed[-1] if listed else b"")
    if tag == b"\xbf\x52":
        (arm, arm_raw) = _children(raw, tlv.read_tlv(raw))[0]
        if arm.tag != b"\xa0":
            return {b"\x81": True, b"\xa1": False}.get(arm.tag)
        tags = {c.tag for c, _ in _children(arm_raw, tlv.read_tlv(arm_raw))}
        if tags & {b"\x80", b"\xbf\x2b"}:
            return True
        if tags & {b"\x81", b"\xa0", b"\xa2", b"\x87"}:
            return False
    return None


def request_to_v1_2(message: bytes) -> bytes:
    """A v1.0.1 EsipaMessageFromIpaToEim in its v1.2 form (messages that did not change are
    returned as they are).

    Raises:
        tlv.TlvError, ValueError: ``message`` is not a well-formed v1.0.1 message.
    """
    item = _one(message)
    if item.tag == b"\xbf\x4f":  # rPLMN [1] → [2]
        body = b"".join(
            tlv.encode_tlv(b"\x82", c.value(raw)) if c.tag == b"\x81" else raw
            for c, raw in _children(message, item)
        )
        return tlv.encode_tlv(b"\xbf\x4f", body)
    if item.tag == b"\xbf\x50":
        parts = _children(message, item)
        if len(parts) != 1:
            raise ValueError("a v1.0.1 ProvideEimPackageResult holds one EimPackageResult")
        return tlv.encode_tlv(b"\xbf\x50", _result_to_v1_2(parts[0][1]))
    if item.tag == b"\xbf\x3d":
        ((inner, raw),) = _children(message, item)
        if inner.tag == b"\xa1":  # provideEimPackageResult [1] IMPLICIT
            result = _result_to_v1_2(inner.value(raw))
            return tlv.encode_tlv(b"\xbf\x3d", tlv.encode_tlv(b"\xbf\x50", result))
    return message


def _result_to_v1_2(raw: bytes) -> bytes:
    """One v1.0.1 EimPackageResult alternative → its v1.2 form."""
    item = _one(raw)
    if item.tag == b"\x02":  # eimPackageError → eimPackageResultResponseError
        return tlv.encode_tlv(b"\xa0", raw)
    if item.tag == b"\x30":  # ePRAndNotifications: BF2B { A0 ... } → A0 ...
        parts = _children(raw, item)
        body = b""
        for child, child_raw in parts:
            if child.tag == b"\xbf\x2b":
                ((listed, listed_raw),) = _children(child_raw, tlv.read_tlv(child_raw))
                if listed.tag != b"\xa0":
                    raise ValueError("ePRAndNotifications must list notifications")
                body += listed_raw
            else:
                body += child_raw
        return tlv.encode_tlv(b"\x30", body)
    if item.tag == b"\xbf\x52":
        return _ipa_euicc_data_to_v1_2(raw, item)
    if item.tag == b"\xbf\x54":
        return _download_result_to_v1_2(raw, item)
    return raw  # BF51: the same in both versions


def _ipa_euicc_data_to_v1_2(raw: bytes, item: tlv.Tlv) -> bytes:
    ((arm, arm_raw),) = _children(raw, item)
    if arm.tag == b"\x81":  # ipaEuiccDataError INTEGER → SEQUENCE { 02 code }
        error = tlv.encode_tlv(b"\x02", arm.value(arm_raw))
        return tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa1", error))
    fields: dict[bytes, bytes] = {}
    for child, child_raw in _children(arm_raw, arm):
        if child.tag == b"\x80":
            fields[b"\x81"] = tlv.encode_tlv(b"\x81", child.value(child_raw))
        elif child.tag == b"\xbf\x2b":  # the card's RetrieveNotificationsList answer shape
            ((listed, listed_raw),) = _children(child_raw, tlv.read_tlv(child_raw))
            if listed.tag == b"\xa0":
                fields[b"\xa0"] = listed_raw
            elif listed.tag == b"\xa2":
                fields[b"\xa2"] = listed_raw
            elif listed.tag == b"\xa3":  # notificationAndEprList { A0 notifications, A1 EPRs }
                for part, part_raw in _children(listed_raw, listed):
                    tag = b"\xa0" if part.tag == b"\xa0" else b"\xa2"
                    fields[tag] = tlv.encode_tlv(tag, part.value(part_raw))
        else:
            fields[child.tag] = child_raw
    body = b"".join(fields[t] for t in _IPA_DATA_ORDER if t in fields)
    return tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa0", body))


def _download_result_to_v1_2(raw: bytes, item: tlv.Tlv) -> bytes:
    body = b""
    for child, child_raw in _children(raw, item):
        if child.tag == b"\x30":  # profileDownloadError { [0] errorResponse OCTET STRING }
            error = tlv.encode_tlv(b"\x80", _UNDEFINED_ERROR[2:])
            for part, part_raw in _children(child_raw, child):
                if part.tag == b"\x80":
                    error += tlv.encode_tlv(b"\x04", part.value(part_raw))
            body += tlv.encode_tlv(b"\x30", error)
        else:
            body += child_raw
    return tlv.encode_tlv(b"\xbf\x54", body)


# -- eIM → IPAd -----------------------------------------------------------------------------------


def answer_to_v1_0(answer: bytes, *, with_euicc_certificate: bool = False) -> bytes:
    """The core's v1.2 EsipaMessageFromEimToIpa in its v1.0.1 form (``with_euicc_certificate``:
    see :func:`package_to_v1_0`).

    Raises:
        NotInV1_0: a ProvideEimPackageResult error (v1.0.1 has no way to say it).
    """
    item = _one(answer)
    if item.tag == b"\xbf\x50":
        ((inner, raw),) = _children(answer, item)
        if inner.tag == b"\x30":  # emptyResponse
            return b"\xbf\x50\x00"
        if inner.tag == b"\xbf\x53":
            return answer  # SEQUENCE { eimAcknowledgements }: the same bytes
        raise NotInV1_0(f"provideEimPackageResultError {inner.value(raw).hex()}")
    if item.tag == b"\xbf\x4f":
        ((inner, raw),) = _children(answer, item)
        if inner.tag in (b"\xbf\x51", b"\xbf\x52"):
            package = package_to_v1_0(raw, with_euicc_certificate=with_euicc_certificate)
            return tlv.encode_tlv(b"\xbf\x4f", package)
    return answer


def package_to_v1_0(package: bytes, *, with_euicc_certificate: bool = False) -> bytes:
    """An eIM package for a v1.0.1 eUICC: an IpaEuiccDataRequest rewritten (tags mapped, the
    v1.2 search criteria folded into v1.0.1's one, no eimTransactionId; with
    ``with_euicc_certificate`` the eUICC certificate ``A6`` is asked for too, so that the
    answer, which carries no transaction id in v1.0.1, names its EID); an EuiccPackageRequest
    checked to hold nothing v1.2 added (its bytes are the same in both).

    Raises:
        NotInV1_0: the package needs v1.2 (setFallbackAttribute, unsetFallbackAttribute,
            setDefaultDpAddress; a tag list of v1.2-only fields).
    """
    item = _one(package)
    if item.tag == b"\xbf\x51":
        _check_psmos(package)
        return package
    if item.tag != b"\xbf\x52":
        return package
    parts = {c.tag: (c, raw) for c, raw in _children(package, item)}
    tag_list = parts[b"\x5c"][0].value(parts[b"\x5c"][1])
    tags, pos = [], 0
    while pos < len(tag_list):
        tag, pos = tlv.read_tag(tag_list, pos)
        tags.append(tag)
    mapped: list[bytes] = []
    for tag in tags:
        new = _TAG_TO_V1_0.get(tag, tag)
        if new is not None and new not in mapped:
            mapped.append(new)
    if not mapped:
        raise NotInV1_0("no field of this IpaEuiccDataRequest exists in v1.0.1")
    if with_euicc_certificate and b"\xa6" not in mapped:
        mapped.append(b"\xa6")
    body = tlv.encode_tlv(b"\x5c", b"".join(mapped))
    if b"\x04" in parts:
        body += parts[b"\x04"][1]
    if b"\xa1" in parts and b"\xa0" in tags:  # notification criteria: the same choice
        body += parts[b"\xa1"][1]
    elif b"\xa2" in tags and b"\xa0" not in tags:  # results only: criteria euiccPackageResults
        body += tlv.encode_tlv(b"\xa1", b"\x82\x00")
    return tlv.encode_tlv(b"\xbf\x52", body)


def ask_certificate_with_euicc_info2(answer: bytes) -> bytes:
    """A v1.2 GetEimPackage answer whose IpaEuiccDataRequest asks for EUICCInfo2 (``BF22``),
    with the eUICC certificate (``A6``) asked for too: a v1.0.1 IPAd answers without
    eimTransactionId and eidValue, and the certificate then names the EID."""
    if b"\xbf\x52" not in answer[3:7]:
        return answer  # a package or an error (every poll's answer): not parsed for nothing
    item = _one(answer)
    parts = _children(answer, item)
    if item.tag != b"\xbf\x4f" or len(parts) != 1 or parts[0][0].tag != b"\xbf\x52":
        return answer
    request, raw = parts[0]
    body = b""
    for child, child_raw in _children(raw, request):
        if child.tag == b"\x5c":
            tag_list = child.value(child_raw)
            tags, pos = [], 0
            while pos < len(tag_list):
                tag, pos = tlv.read_tag(tag_list, pos)
                tags.append(tag)
            if b"\xbf\x22" not in tags or b"\xa6" in tags:
                return answer
            child_raw = tlv.encode_tlv(b"\x5c", tag_list + b"\xa6")
        body += child_raw
    return tlv.encode_tlv(b"\xbf\x4f", tlv.encode_tlv(b"\xbf\x52", body))


def _check_psmos(package: bytes) -> None:
    signed = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]
    kind, operations = signed["euiccPackage"]
    added = {"setFallbackAttribute", "unsetFallbackAttribute", "setDefaultDpAddress"}
    needs = sorted({name for name, _ in operations if name in added}) if kind == "psmoList" else []
    if needs:
        raise NotInV1_0(f"{', '.join(needs)} do not exist in SGP.32 v1.0.1")
