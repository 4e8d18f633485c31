"""What the eIM sends the IPAd and what it checks in the answers (GSMA SGP.32 v1.2 §2.11).

Built here, byte for byte:

* EimConfigurationData (``30``, or ``A8``/``AA`` inside an addEim/updateEim eCO);
* EuiccPackageRequest ``BF51 { euiccPackageSigned, 5F37 eimSignature }`` where
  eimSignature = ECDSA-SHA256 (raw r‖s) over DER(euiccPackageSigned) ‖ ``84 L token``;
* IpaEuiccDataRequest ``BF52`` and ProfileDownloadTriggerRequest ``BF54``.

The operator API describes operations as JSON named after the ASN.1 (``{"enable": {"iccid":
"8949..."}}``); :func:`operations_from_json` validates and encodes them.

Checked here: an EuiccPackageResult (``BF51``) is split into its parts (:func:`parse_epr`) and
its euiccSignEPR / euiccSignEPE verified over the received signed TLV ‖ ``84 L token``
(:func:`verify_epr`). The token TLV is the DER INTEGER; the minimal unsigned form some
open-source eIMs use is accepted too. They differ only from 128 on; tokens this eIM chooses
stay in 1..127.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from euicc_protocol import crypto, pki, schema, tlv
from euicc_protocol.eim_config import encode_eim_configuration
from euicc_protocol.iccid import InvalidIccid, iccid_to_ef
from euicc_protocol.tlv import der_integer

from ..common import has_unknown_alternative, is_hex, pem, tlv_children, value_to_json
from ..common.addresses import is_valid_address

__all__ = [
    "IPA_EUICC_DATA_TAGS",
    "EimConfigurationData",
    "ORDER_KINDS",
    "EprInfo",
    "MessageError",
    "PackageError",
    "activation_code_address",
    "decode_message",
    "euicc_package_request",
    "ipa_euicc_data_request",
    "message_parts",
    "operations_from_json",
    "order_payload",
    "parse_epr",
    "profile_download_trigger",
    "token_tlv",
    "validate_order",
    "verify_epr",
    "verify_signature",
]

_SIG = b"\x5f\x37"
_PROTOCOL_BITS = {
    "eimRetrieveHttps": 0,
    "eimRetrieveCoaps": 1,
    "eimInjectHttps": 2,
    "eimInjectCoaps": 3,
    "eimProprietary": 4,
}
#: IpaEuiccData fields by name → their tag in a tagList (SGP.32 v1.2 §2.11.1.2).
IPA_EUICC_DATA_TAGS = {
    "notificationsList": "A0",
    "defaultSmdpAddress": "81",
    "euiccPackageResultList": "A2",
    "euiccInfo1": "BF20",
    "euiccInfo2": "BF22",
    "rootSmdsAddress": "83",
    "associationToken": "84",
    "eumCertificate": "A5",
    "euiccCertificate": "A6",
    "eimTransactionId": "87",
    "ipaCapabilities": "A8",
    "deviceInfo": "A9",
}
_PROFILE_CLASSES = {"test": 0, "provisioning": 1, "operational": 2}
MAX_OPERATIONS = 32


class PackageError(ValueError):
    """Operator input that does not make a valid package (the message says what is wrong)."""


class MessageError(ValueError):
    """An ESipa message the eIM cannot take (HTTP 400 in the ASN.1 binding)."""


def decode_message(type_name: str, raw: bytes) -> Any:
    """Decode a received ESipa message or part of one.

    Raises:
        MessageError: it is not a valid ``type_name``.
    """
    try:
        value = schema.decode(type_name, raw)
    except schema.DecodeError as exc:
        raise MessageError(f"not a valid {type_name}: {exc}") from None
    if has_unknown_alternative(value):
        # A CHOICE alternative the schema does not know (after an extension marker): nothing
        # this eIM can act on.
        raise MessageError(f"not a valid {type_name}: unknown CHOICE alternative")
    return value


def message_parts(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(tag, TLV as received) of each TLV inside the TLV ``raw`` starts with.

    Raises:
        MessageError: malformed TLVs.
    """
    try:
        return tlv_children(raw)
    except tlv.TlvError as exc:
        raise MessageError(str(exc)) from None


def token_tlv(token: int | None) -> bytes:
    """``84 L token`` as appended to signed data (DER INTEGER); empty without a token."""
    return b"" if token is None else tlv.encode_tlv(b"\x84", der_integer(token))


def _token_forms(token: int | None) -> list[bytes]:
    forms = [token_tlv(token)]
    if token is not None and token > 0:
        unsigned = tlv.encode_tlv(b"\x84", token.to_bytes((token.bit_length() + 7) // 8, "big"))
        if unsigned != forms[0]:
            forms.append(unsigned)
    return forms


# --------------------------------------------------------------------------- JSON input


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PackageError(f"{what} must be a JSON object")
    return value


def _only(data: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise PackageError(f"{what}: unknown field(s) {', '.join(extra)}")


def _text(data: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise PackageError(f"{what}: {key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise PackageError(f"{what}: {key} must be a non-empty string")
    return value


def _int(data: Mapping[str, Any], key: str, what: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PackageError(f"{what}: {key} must be an integer in {low}..{high}")
    return value


def _flag(data: Mapping[str, Any], key: str, what: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise PackageError(f"{what}: {key} must be true or false")
    return value


def _hex(data: Mapping[str, Any], key: str, what: str, max_bytes: int = 255) -> bytes | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not is_hex(value, max_bytes=max_bytes):
        raise PackageError(f"{what}: {key} must be hex of 1..{max_bytes} bytes")
    return bytes.fromhex(value)


def iccid_ef(value: Any, what: str) -> bytes:
    """ICCID digits (18-20, as printed on the card) → the 10-byte EF.ICCID coding of ``5A``."""
    if not isinstance(value, str) or not 18 <= len(value) <= 20:
        raise PackageError(f"{what}: iccid must be a string of 18..20 digits")
    try:
        return iccid_to_ef(value)
    except InvalidIccid as exc:
        raise PackageError(f"{what}: {exc}") from None


def _pem(data: Mapping[str, Any], key: str, what: str, *, certificate: bool) -> bytes | None:
    """A PEM certificate or public key from JSON → its DER (Certificate / SubjectPublicKeyInfo)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "-----BEGIN" not in value:
        raise PackageError(f"{what}: {key} must be PEM text")
    try:
        if certificate:
            return pki.load_certificate(value.encode()).public_bytes(Encoding.DER)
        key_obj = pki.load_public_key(value.encode())
    except (ValueError, pki.CertificateError) as exc:
        raise PackageError(f"{what}: {key} is unusable: {exc}") from None
    return key_obj.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------- eIM configuration


@dataclass(frozen=True)
class EimConfigurationData:
    """One EimConfigurationData (SGP.32 §2.11.1); key material as DER."""

    eim_id: str
    eim_fqdn: str | None = None
    eim_id_type: int | None = None
    counter_value: int | None = None
    association_token: int | None = None
    eim_public_key: bytes | None = None  # SubjectPublicKeyInfo
    eim_certificate: bytes | None = None
    trusted_eim_pk_tls: bytes | None = None  # SubjectPublicKeyInfo
    trusted_certificate_tls: bytes | None = None
    eim_supported_protocol: frozenset[int] | None = None
    euicc_ci_pkid: bytes | None = None
    indirect_profile_download: bool = False

    def encode(self, tag: bytes = b"\x30") -> bytes:
        """The DER TLV; ``tag`` ``A8``/``AA`` gives the addEim/updateEim eCO (implicit tag)."""
        return encode_eim_configuration(
            eim_id=self.eim_id,
            eim_fqdn=self.eim_fqdn,
            eim_id_type=self.eim_id_type,
            counter_value=self.counter_value,
            association_token=self.association_token,
            eim_public_key=self.eim_public_key,
            eim_certificate=self.eim_certificate,
            trusted_eim_pk_tls=self.trusted_eim_pk_tls,
            trusted_certificate_tls=self.trusted_certificate_tls,
            supported_protocols=self.eim_supported_protocol,
            euicc_ci_pkid=self.euicc_ci_pkid,
            indirect_profile_download=self.indirect_profile_download,
            tag=tag,
        )

    def add_initial_eim_request(self) -> bytes:
        """``BF57 { A0 { 30 ... } }``: the ES10b.AddInitialEim request with this entry."""
        return tlv.encode_tlv(b"\xbf\x57", tlv.encode_tlv(b"\xa0", self.encode()))

    def to_json(self) -> dict[str, Any]:
        """The fields present, named as in the ASN.1; keys/certificates as PEM."""
        out: dict[str, Any] = {"eimId": self.eim_id}
        simple = {
            "eimFqdn": self.eim_fqdn,
            "eimIdType": self.eim_id_type,
            "counterValue": self.counter_value,
            "associationToken": self.association_token,
        }
        out.update({k: v for k, v in simple.items() if v is not None})
        for name, der, label in (
            ("eimPublicKey", self.eim_public_key, "PUBLIC KEY"),
            ("eimCertificate", self.eim_certificate, "CERTIFICATE"),
            ("trustedEimPkTls", self.trusted_eim_pk_tls, "PUBLIC KEY"),
            ("trustedCertificateTls", self.trusted_certificate_tls, "CERTIFICATE"),
        ):
            if der is not None:
                out[name] = pem(der, label)
        if self.eim_supported_protocol is not None:
            names = {bit: name for name, bit in _PROTOCOL_BITS.items()}
            out["eimSupportedProtocol"] = [
                names.get(b, b) for b in sorted(self.eim_supported_protocol)
            ]
        if self.euicc_ci_pkid is not None:
            out["euiccCiPKId"] = self.euicc_ci_pkid.hex().upper()
        if self.indirect_profile_download:
            out["indirectProfileDownload"] = True
        return out

    @classmethod
    def from_json(cls, data: Any, what: str = "eIM configuration") -> EimConfigurationData:
        """Parse the JSON form of :meth:`to_json` (PEM keys/certificates)."""
        data = _obj(data, what)
        fields = (
            "eimId eimFqdn eimIdType counterValue associationToken eimPublicKey eimCertificate "
            "trustedEimPkTls trustedCertificateTls eimSupportedProtocol euiccCiPKId "
            "indirectProfileDownload"
        ).split()
        _only(data, fields, what)
        eim_id = _text(data, "eimId", what, required=True)
        assert eim_id is not None
        if len(eim_id.encode("utf-8")) > 128:
            raise PackageError(f"{what}: eimId is longer than 128 bytes")
        protocols = data.get("eimSupportedProtocol")
        bits: frozenset[int] | None = None
        if protocols is not None:
            if not isinstance(protocols, list) or not all(
                p in _PROTOCOL_BITS or (isinstance(p, int) and 0 <= p <= 4) for p in protocols
            ):
                raise PackageError(f"{what}: eimSupportedProtocol must list {list(_PROTOCOL_BITS)}")
            bits = frozenset(_PROTOCOL_BITS.get(p, p) for p in protocols)  # type: ignore[misc]
        if "eimPublicKey" in data and "eimCertificate" in data:
            raise PackageError(f"{what}: give eimPublicKey or eimCertificate, not both")
        if "trustedEimPkTls" in data and "trustedCertificateTls" in data:
            raise PackageError(f"{what}: give trustedEimPkTls or trustedCertificateTls")
        return cls(
            eim_id=eim_id,
            eim_fqdn=_text(data, "eimFqdn", what),
            eim_id_type=_int(data, "eimIdType", what, 1, 3),
            counter_value=_int(data, "counterValue", what, 0, 2**31 - 1),
            association_token=_int(data, "associationToken", what, -1, 2**31 - 1),
            eim_public_key=_pem(data, "eimPublicKey", what, certificate=False),
            eim_certificate=_pem(data, "eimCertificate", what, certificate=True),
            trusted_eim_pk_tls=_pem(data, "trustedEimPkTls", what, certificate=False),
            trusted_certificate_tls=_pem(data, "trustedCertificateTls", what, certificate=True),
            eim_supported_protocol=bits,
            euicc_ci_pkid=_hex(data, "euiccCiPKId", what, max_bytes=20),
            indirect_profile_download=_flag(data, "indirectProfileDownload", what),
        )


# --------------------------------------------------------------------------- operations


def _psmo(name: str, args: Mapping[str, Any]) -> bytes:
    what = f"psmo {name}"
    value: dict[str, Any]
    if name in ("enable", "disable", "delete", "setFallbackAttribute"):
        _only(args, ("iccid", "rollbackFlag") if name == "enable" else ("iccid",), what)
        value = {"iccid": iccid_ef(args.get("iccid"), what)}
        if name == "enable" and _flag(args, "rollbackFlag", what):
            value["rollbackFlag"] = None
    elif name in ("getRAT", "unsetFallbackAttribute"):
        _only(args, (), what)
        value = {}
    elif name == "listProfileInfo":
        _only(args, ("searchCriteria", "tagList"), what)
        value = {}
        if "searchCriteria" in args:
            value["searchCriteria"] = _search_criteria(_obj(args["searchCriteria"], what), what)
        tags = _hex(args, "tagList", what)
        if tags is not None:
            value["tagList"] = tags
    elif name == "configureImmediateEnable":
        _only(args, ("immediateEnableFlag", "defaultSmdpOid", "defaultSmdpAddress"), what)
        value = {}
        if _flag(args, "immediateEnableFlag", what):
            value["immediateEnableFlag"] = None
        oid = _text(args, "defaultSmdpOid", what)
        if oid is not None:
            parts = oid.split(".")
            if len(parts) < 2 or not all(p.isdigit() for p in parts):
                raise PackageError(f"{what}: defaultSmdpOid must be a dotted OID")
            value["defaultSmdpOid"] = oid
        address = _text(args, "defaultSmdpAddress", what)
        if address is not None:
            value["defaultSmdpAddress"] = address
    elif name == "setDefaultDpAddress":
        _only(args, ("defaultDpAddress",), what)
        address = args.get("defaultDpAddress")
        if not isinstance(address, str):  # empty clears the address on the card
            raise PackageError(f"{what}: defaultDpAddress must be a string")
        value = {"defaultDpAddress": address}
    else:
        raise PackageError(f"unknown PSMO {name!r}")
    return schema.encode("Psmo", (name, value))


def _search_criteria(data: Mapping[str, Any], what: str) -> tuple[str, Any]:
    if len(data) != 1:
        raise PackageError(f"{what}: searchCriteria needs exactly one of iccid, isdpAid, ...")
    key, value = next(iter(data.items()))
    if key == "iccid":
        return "iccid", iccid_ef(value, what)
    if key == "isdpAid":
        aid = _hex(data, "isdpAid", what, max_bytes=16)
        return "isdpAid", aid
    if key == "profileClass":
        number = _PROFILE_CLASSES.get(value, value)
        if number not in (0, 1, 2) or isinstance(number, bool):
            raise PackageError(f"{what}: profileClass must be test, provisioning or operational")
        return "profileClass", number
    raise PackageError(f"{what}: unknown searchCriteria {key!r}")


def _eco(name: str, args: Mapping[str, Any]) -> bytes:
    what = f"eco {name}"
    if name in ("addEim", "updateEim"):
        config = EimConfigurationData.from_json(args, what)
        return config.encode(b"\xa8" if name == "addEim" else b"\xaa")
    if name == "deleteEim":
        _only(args, ("eimId",), what)
        eim_id = _text(args, "eimId", what, required=True)
        assert eim_id is not None
        return schema.encode("Eco", ("deleteEim", {"eimId": eim_id}))
    if name == "listEim":
        _only(args, (), what)
        return schema.encode("Eco", ("listEim", {}))
    raise PackageError(f"unknown eCO {name!r}")


def operations_from_json(kind: str, items: Any) -> list[bytes]:
    """Encode the operations of a ``psmo`` or ``eco`` order: a list of one-key objects
    ``{"<alternative>": {arguments}}``. Returns one TLV per operation.

    Raises:
        PackageError: the list or an operation is invalid.
    """
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_OPERATIONS:
        raise PackageError(f"operations must be a list of 1..{MAX_OPERATIONS} objects")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or len(item) != 1:
            raise PackageError(f"operation {index} must be an object with exactly one key")
        name, args = next(iter(item.items()))
        args = _obj(args if args is not None else {}, f"operation {index} ({name})")
        out.append(_psmo(name, args) if kind == "psmo" else _eco(name, args))
    return out


def stored_operations(kind: str, items: Any) -> list[bytes]:
    """:func:`operations_from_json` for the operations of a stored order (plain JSON values,
    as read back from the store): encoded once per distinct list (kept by its exact JSON
    text), since a campaign delivers the same operations to every device.

    Raises:
        PackageError: the list or an operation is invalid.
    """
    try:
        text = json.dumps(items)
    except (TypeError, ValueError):
        return operations_from_json(kind, items)  # not plain JSON: validated (and refused)
    return list(_operations_of_text(kind, text))


@functools.lru_cache(maxsize=1024)
def _operations_of_text(kind: str, text: str) -> tuple[bytes, ...]:
    return tuple(operations_from_json(kind, json.loads(text)))


# --------------------------------------------------------------------------- requests


def euicc_package_signed(
    eim_id: str,
    eid: bytes,
    counter_value: int,
    eim_transaction_id: bytes | None,
    kind: str,
    operations: Iterable[bytes],
) -> bytes:
    """DER of EuiccPackageSigned; ``kind`` is ``psmo`` (``A0`` psmoList) or ``eco`` (``A1``)."""
    body = tlv.encode_tlv(b"\x80", eim_id.encode("utf-8"))
    body += tlv.encode_tlv(b"\x5a", eid)
    body += tlv.encode_tlv(b"\x81", der_integer(counter_value))
    if eim_transaction_id is not None:
        body += tlv.encode_tlv(b"\x82", eim_transaction_id)
    body += tlv.encode_tlv(b"\xa0" if kind == "psmo" else b"\xa1", b"".join(operations))
    return tlv.encode_tlv(b"\x30", body)


def euicc_package_request(
    signed: bytes, key: ec.EllipticCurvePrivateKey, association_token: int | None
) -> bytes:
    """``BF51 { signed, 5F37 eimSignature }``, signed over ``signed ‖ 84 L token``."""
    signature = crypto.sign_raw(key, signed + token_tlv(association_token))
    return tlv.encode_tlv(b"\xbf\x51", signed + tlv.encode_tlv(_SIG, signature))


def tag_list_from_json(value: Any) -> bytes:
    """A tagList from hex (``"84A6"``) or a list of IpaEuiccData field names or hex tags.

    Only IpaEuiccData fields may be named: IPAds in the field answer incorrectTagList to
    anything else (``5A`` EID, ``BF2D`` profiles; read those with a PSMO listProfileInfo).
    """
    out = b""
    if isinstance(value, str) and is_hex(value):
        out = bytes.fromhex(value)
    elif isinstance(value, list) and value:
        for item in value:
            tag = IPA_EUICC_DATA_TAGS.get(item, item) if isinstance(item, str) else None
            if tag is None or not is_hex(tag, max_bytes=2):
                raise PackageError(f"tagList: unknown field {item!r}")
            out += bytes.fromhex(tag)
    else:
        raise PackageError("tagList must be hex or a non-empty list of IpaEuiccData field names")
    known = {bytes.fromhex(t) for t in IPA_EUICC_DATA_TAGS.values()}
    pos = 0
    try:
        while pos < len(out):
            found, pos = tlv.read_tag(out, pos)
            if found not in known:
                name = found.hex().upper()
                raise PackageError(f"tagList: {name} is not an IpaEuiccData field")
    except tlv.TlvError as exc:
        raise PackageError(f"tagList: {exc}") from None
    return out


def ipa_euicc_data_request(
    tag_list: bytes,
    eim_transaction_id: bytes | None = None,
    *,
    euicc_ci_pkid: bytes | None = None,
    notification_search: tuple[str, Any] | None = None,
    epr_seq_number: int | None = None,
) -> bytes:
    """``BF52`` IpaEuiccDataRequest (v1.2)."""
    value: dict[str, Any] = {"tagList": tag_list}
    if euicc_ci_pkid is not None:
        value["euiccCiPKIdentifierToBeUsed"] = euicc_ci_pkid
    if notification_search is not None:
        value["searchCriteriaNotification"] = notification_search
    if epr_seq_number is not None:
        value["searchCriteriaEuiccPackageResult"] = ("seqNumber", epr_seq_number)
    if eim_transaction_id is not None:
        value["eimTransactionId"] = eim_transaction_id
    return schema.encode("IpaEuiccDataRequest", value)


def profile_download_trigger(
    download_data: tuple[str, Any] | None, eim_transaction_id: bytes | None = None
) -> bytes:
    """``BF54`` ProfileDownloadTriggerRequest; ``download_data`` is a ProfileDownloadData
    alternative: ``("activationCode", "1$...")``, ``("contactDefaultSmdp", None)`` or
    ``("contactSmds", {"smdsAddress": ...})``."""
    value: dict[str, Any] = {}
    if download_data is not None:
        value["profileDownloadData"] = download_data
    if eim_transaction_id is not None:
        value["eimTransactionId"] = eim_transaction_id
    return schema.encode("ProfileDownloadTriggerRequest", value)


# --------------------------------------------------------------------------- orders

#: The kinds of order the operator API queues.
ORDER_KINDS = ("psmo", "eco", "download", "euiccData")
_NOTIFICATION_EVENTS = {
    "notificationInstall": 0,
    "notificationEnable": 1,
    "notificationDisable": 2,
    "notificationDelete": 3,
}


def activation_code_address(activation_code: str) -> str | None:
    """The SM-DP+ address of an activation code ``[LPA:]1$ADDRESS$MATCHING_ID[$...]``
    (``None`` when it has none, or not a well-formed host[:port])."""
    text = activation_code[4:] if activation_code.upper().startswith("LPA:") else activation_code
    parts = text.split("$")
    if len(parts) < 3 or parts[0] != "1" or not is_valid_address(parts[1]):
        return None
    return parts[1]


def validate_order(data: Any) -> tuple[str, dict[str, Any]]:
    """Check an operator order (``{"type": ..., ...}``) and return (kind, request to store).

    * ``psmo`` / ``eco``: ``operations``, a list for :func:`operations_from_json`;
    * ``download``: exactly one of ``activationCode`` (``1$ADDRESS$MATCHING_ID...``),
      ``contactDefaultSmdp`` (true) or ``contactSmds`` (``{"smdsAddress"?}``);
    * ``euiccData``: ``tagList`` (hex or IpaEuiccData field names), optional
      ``euiccCiPKIdentifierToBeUsed`` (hex), ``searchCriteriaNotification``
      (``{"seqNumber": n}`` or ``{"profileManagementOperation": [event names]}``),
      ``searchCriteriaEuiccPackageResult`` (``{"seqNumber": n}``).

    Raises:
        PackageError: what is wrong with it.
    """
    data = _obj(data, "order")
    kind = data.get("type")
    if kind not in ORDER_KINDS:
        raise PackageError(f"order type must be one of {', '.join(ORDER_KINDS)}")
    if kind in ("psmo", "eco"):
        _only(data, ("type", "operations"), "order")
        operations_from_json(kind, data.get("operations"))
        return kind, {"type": kind, "operations": data["operations"]}
    if kind == "download":
        _only(data, ("type", "activationCode", "contactDefaultSmdp", "contactSmds"), "order")
        chosen = [k for k in ("activationCode", "contactDefaultSmdp", "contactSmds") if k in data]
        if len(chosen) != 1:
            raise PackageError(
                "download: give one of activationCode, contactDefaultSmdp, contactSmds"
            )
        _download_data(data)
        return kind, dict(data)
    _only(
        data,
        (
            "type",
            "tagList",
            "euiccCiPKIdentifierToBeUsed",
            "searchCriteriaNotification",
            "searchCriteriaEuiccPackageResult",
        ),
        "order",
    )
    _euicc_data_arguments(data)
    return kind, dict(data)


def _download_data(request: Mapping[str, Any]) -> tuple[str, Any]:
    what = "download"
    if "activationCode" in request:
        code = request["activationCode"]
        if not isinstance(code, str) or len(code.encode()) > 255:
            raise PackageError(f"{what}: activationCode must be a string of at most 255 bytes")
        if activation_code_address(code) is None:
            raise PackageError(
                f"{what}: activationCode must look like 1$SMDP_ADDRESS$MATCHING_ID "
                "(a host name of labels of 1..63 characters, or an IPv4 address, and :port)"
            )
        return "activationCode", code
    if "contactDefaultSmdp" in request:
        if request["contactDefaultSmdp"] is not True:
            raise PackageError(f"{what}: contactDefaultSmdp must be true")
        return "contactDefaultSmdp", None
    smds = _obj(request["contactSmds"], f"{what}: contactSmds")
    _only(smds, ("smdsAddress",), f"{what}: contactSmds")
    address = _text(smds, "smdsAddress", f"{what}: contactSmds")
    return "contactSmds", ({"smdsAddress": address} if address is not None else {})


def _euicc_data_arguments(request: Mapping[str, Any]) -> dict[str, Any]:
    what = "euiccData"
    out: dict[str, Any] = {"tag_list": tag_list_from_json(request.get("tagList"))}
    out["euicc_ci_pkid"] = _hex(request, "euiccCiPKIdentifierToBeUsed", what, max_bytes=20)
    if "searchCriteriaNotification" in request:
        crit = _obj(request["searchCriteriaNotification"], f"{what}: searchCriteriaNotification")
        if set(crit) == {"seqNumber"}:
            out["notification_search"] = (
                "seqNumber",
                _int(crit, "seqNumber", what, 0, 2**31 - 1),
            )
        elif set(crit) == {"profileManagementOperation"}:
            names = crit["profileManagementOperation"]
            if not isinstance(names, list) or not all(n in _NOTIFICATION_EVENTS for n in names):
                raise PackageError(f"{what}: profileManagementOperation lists event names")
            bits = schema.bits(_NOTIFICATION_EVENTS[n] for n in names)
            out["notification_search"] = ("profileManagementOperation", bits)
        else:
            raise PackageError(
                f"{what}: searchCriteriaNotification is seqNumber or profileManagementOperation"
            )
    if "searchCriteriaEuiccPackageResult" in request:
        crit = _obj(request["searchCriteriaEuiccPackageResult"], what)
        _only(crit, ("seqNumber",), f"{what}: searchCriteriaEuiccPackageResult")
        seq = _int(crit, "seqNumber", what, 0, 2**31 - 1)
        if seq is None:
            raise PackageError(f"{what}: searchCriteriaEuiccPackageResult needs seqNumber")
        out["epr_seq_number"] = seq
    return out


def order_payload(kind: str, request: Mapping[str, Any], eim_transaction_id: bytes) -> bytes:
    """The ``BF54`` or ``BF52`` request of a ``download`` or ``euiccData`` order."""
    if kind == "download":
        return profile_download_trigger(_download_data(request), eim_transaction_id)
    if kind == "euiccData":
        args = _euicc_data_arguments(request)
        tag_list = args.pop("tag_list")
        return ipa_euicc_data_request(tag_list, eim_transaction_id, **args)
    raise ValueError(f"{kind} orders are eUICC packages, signed by the eIM")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EprInfo:
    """The parts of a received EuiccPackageResult (``BF51``) an eIM acts on."""

    raw: bytes
    kind: str  # euiccPackageResultSigned | euiccPackageErrorSigned | euiccPackageErrorUnsigned
    eim_id: str
    counter_value: int | None
    eim_transaction_id: bytes | None
    seq_number: int | None  # signed results only (shares the notification numbering)
    error_code: int | None  # euiccPackageErrorCode of a signed error
    signed: bytes | None  # the signed data TLV exactly as received
    signature: bytes | None
    decoded: Any  # JSON form with the ASN.1 names

    @property
    def is_result(self) -> bool:
        """Whether this is a signed result (the package ran), not an error."""
        return self.kind == "euiccPackageResultSigned"


def parse_epr(raw: bytes, decoded: tuple[str, Any] | None = None) -> EprInfo:
    """Split a ``BF51`` EuiccPackageResult into its parts, keeping the signed TLV's bytes.
    ``decoded``: these very bytes as decoded already (as part of the message that carried
    them, checked for unknown alternatives there), not decoded again.

    Raises:
        PackageError: not a well-formed EuiccPackageResult.
    """
    try:
        if decoded is None:
            decoded = schema.decode("EuiccPackageResult", raw)
            if has_unknown_alternative(decoded):
                raise schema.DecodeError("unknown CHOICE alternative")
        kind, value = decoded
        outer = tlv.read_tlv(raw)
        parts = tlv_children(raw, tlv.read_tlv(raw, outer.value_start))
    except (schema.DecodeError, tlv.TlvError) as exc:
        raise PackageError(f"not an EuiccPackageResult: {exc}") from None
    signed: bytes | None = None
    signature: bytes | None = None
    if kind == "euiccPackageErrorUnsigned":
        data = value
    else:
        if len(parts) != 2 or parts[1][0] != _SIG:
            raise PackageError("signed EuiccPackageResult without its 5F37 signature")
        signed = parts[0][1]
        signature = tlv.read_tlv(parts[1][1]).value(parts[1][1])
        data = value[
            "euiccPackageResultDataSigned"
            if kind == "euiccPackageResultSigned"
            else "euiccPackageErrorDataSigned"
        ]
    return EprInfo(
        raw=bytes(raw),
        kind=kind,
        eim_id=data["eimId"],
        counter_value=data.get("counterValue"),
        eim_transaction_id=data.get("eimTransactionId"),
        seq_number=data.get("seqNumber"),
        error_code=data.get("euiccPackageErrorCode"),
        signed=signed,
        signature=signature,
        decoded={kind: value_to_json(value)},
    )


def verify_signature(
    public_key: ec.EllipticCurvePublicKey,
    signature: bytes,
    signed: bytes,
    association_token: int | None,
) -> bool:
    """Whether a ``5F37`` value verifies over ``signed ‖ 84 L token`` (either token form)."""
    for form in _token_forms(association_token):
        try:
            crypto.verify_raw(public_key, signature, signed + form)
        except crypto.CryptoError:
            continue
        return True
    return False


def verify_epr(
    info: EprInfo, public_key: ec.EllipticCurvePublicKey, association_token: int | None
) -> bool:
    """Whether euiccSignEPR/EPE verifies over the signed TLV ‖ ``84 L token``."""
    if info.signed is None or info.signature is None:
        return False
    return verify_signature(public_key, info.signature, info.signed, association_token)
