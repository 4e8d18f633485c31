"""eIM associations (SGP.32 v1.2): configuration data, association tokens, counters, and the
signatures that bind an eIM and this eUICC (EimConfigurationData, SGP.32 v1.2 §2.11.1.1.1;
ES10b.AddInitialEim and ES10b.LoadEuiccPackage, §5.9).

ES10b functions here: GetEimConfigurationData (``BF55``) and AddInitialEim (``BF57``). The
eIM Configuration Operations of a package (addEim, deleteEim, updateEim, listEim) are pure
functions on the state, run by :mod:`euicc_sim.euicc_package`.

Rules
=====

1. AddInitialEim is the unsigned way in and is refused with associatedEimAlreadyExists (2)
   as soon as any eIM is configured (the v1.2 successor of v1.0's
   unsignedEimConfigDisallowed); afterwards eIMs change only through signed eCOs. A request
   is all or nothing: one bad entry refuses the whole request and stores nothing.
2. A request the strict decoder refuses (an empty eimId breaks SIZE(1..128)) is ``6A80``.
   Checks per configuration entry, in this order (the first failure is the answer):

   ==========================================================  ===================================
   condition                                                   result
   ==========================================================  ===================================
   eimIdType not 1..3, no eimPublicKeyData (add),                commandError (7)
   a key or certificate that does not parse or is not EC on
   P-256/brainpoolP256r1, a certificate that is neither
   self-signed nor issued by a CI the card trusts for
   verification
   eimCertificate issued by an unknown CI, euiccCiPKId not a   ciPKUnknown (3)
   CI the card signs under
   counterValue outside 0..:data:`MAX_COUNTER`                 counterValueOutOfRange (6)
   associationToken not -1 and not in 1..:data:`MAX_TOKEN`     invalidAssociationToken (5)
   (add), or updateEim with -1 or outside 1..MAX_TOKEN         commandError (7)
   ==========================================================  ===================================

   Then, per request: two entries with one eimId is commandError (7) (AddInitialEim), an
   eimId already configured is associatedEimAlreadyExists (2) (addEim), more than
   :data:`MAX_EIMS` configurations is insufficientMemory (1).
3. associationToken: ``-1`` asks the eUICC to allocate one; it takes
   ``next_association_token`` (1, 2, 3, ...; never reset, not even by eUICCMemoryReset, so
   a new association never reuses an old token) and returns it (``84``). A positive token
   chosen by the eIM is stored as given and answered ``addOk`` (``05 00``). No ``84``: the
   configuration has no token.
4. counterValue: the configured value (0 when absent) is the last accepted one; a package
   must carry a strictly greater value (see :mod:`euicc_sim.euicc_package`).
5. updateEim replaces the fields present in the update and keeps the others; eimId selects
   the entry. A new token must be given explicitly (UpdateEimResult cannot return one).
   deleteEim of the only configuration answers lastEimDeleted (2): it is deleted, and the
   card is back to "no eIM" (AddInitialEim allowed again).
6. Signatures (SGP.32 v1.2 §2.11): eimSignature and the eUICC's EPR/EPE signatures cover
   the signed DER followed by the eIM's associationToken as a ``84`` TLV, or nothing when the
   eIM has no token. Implementations disagree on the token bytes from 128 on (DER two's complement
   ``84 02 00 80`` vs. minimal unsigned ``84 01 80``): the card accepts an eimSignature over
   either form and signs its answers with the form that verified. Tokens 1..127 are the same
   in both.
7. GetEimConfigurationData returns every stored field, counterValue being the last accepted
   one and key material exactly as received; an unknown searchCriteria alternative matches
   nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, pki, schema, tlv
from euicc_protocol.eim_config import encode_eim_configuration
from euicc_protocol.tlv import der_integer

from .apdu import StatusWordError
from .ecasd import Credentials, SigningChain
from .isdr import IsdrContext, RawHandler
from .registry import HandlerTable
from .state import CardState, EimConfig

log = logging.getLogger(__name__)

HANDLERS = HandlerTable()

#: Most eIM configurations the card stores.
MAX_EIMS = 8
#: Largest counterValue the card accepts (it keeps counters as signed 32-bit numbers).
MAX_COUNTER = 2**31 - 1
#: Largest association token (allocated or chosen by an eIM).
MAX_TOKEN = 2**31 - 1
#: associationToken value asking the eUICC to allocate a token.
TOKEN_REQUESTED = -1

# AddInitialEimError / AddEimResult / UpdateEimResult / DeleteEimResult codes.
OK = 0
INSUFFICIENT_MEMORY = 1
ASSOCIATED_EIM_ALREADY_EXISTS = 2
CI_PK_UNKNOWN = 3
INVALID_ASSOCIATION_TOKEN = 5
COUNTER_VALUE_OUT_OF_RANGE = 6
COMMAND_ERROR = 7
UNDEFINED_ERROR = 127
EIM_NOT_FOUND = 1
LAST_EIM_DELETED = 2

_EIM_ID_TYPES = frozenset({1, 2, 3})  # eimIdTypeOid, eimIdTypeFqdn, eimIdTypeProprietary
_SIGNATURE_TAG = b"\x5f\x37"


class EimConfigError(Exception):
    """A configuration entry is refused; ``code`` is the result code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- DER helpers ----------------------------------------------------------------------------


def token_tlvs(token: int | None) -> tuple[bytes, ...]:
    """The ``84`` TLVs an eIM may have appended for ``token`` (rule 6), DER form first.

    ``(b"",)`` when there is no token: nothing is appended.
    """
    if token is None:
        return (b"",)
    der = der_integer(token)
    forms = [tlv.encode_tlv(b"\x84", der)]
    if token > 0:
        unsigned = token.to_bytes((token.bit_length() + 7) // 8, "big")
        if unsigned != der:
            forms.append(tlv.encode_tlv(b"\x84", unsigned))
    return tuple(forms)


# --- configuration entries ------------------------------------------------------------------


@dataclass(frozen=True)
class EimEntry:
    """One received EimConfigurationData: the fields present, the token as sent."""

    config: EimConfig  # absent fields hold EimConfig's defaults
    present: frozenset[str]  # ASN.1 names of the fields present
    token: int | None  # associationToken as received (-1: allocate one)


_KEY_FIELDS = (("eimPublicKeyData", 0xA5), ("trustedPublicKeyDataTls", 0xA6))


def _key_material(
    value: Mapping[str, Any], raw: bytes, spans: schema.Spans, path: schema.FieldPath
) -> dict[bytes, bytes]:
    """``A5``/``A6`` of an entry -> the DER (``30`` restored) of the key or certificate.

    Key material is taken from the received bytes, at the place the strict parse found it,
    so a certificate keeps its exact bytes (its signature covers them) and is returned by
    GetEimConfigurationData as it came.
    """
    found: dict[bytes, bytes] = {}
    for name, tag in _KEY_FIELDS:
        arm = value.get(name, (None, None))[0]
        if arm is None:
            continue
        start, end = spans[(*path, name, arm)]
        # [0]/[1] IMPLICIT SubjectPublicKeyInfo / Certificate: the tag replaced the 30.
        found[bytes((tag, raw[start]))] = b"\x30" + raw[start + 1 : end]
    return found


def parse_entry(
    value: Mapping[str, Any], raw: bytes, spans: schema.Spans, path: schema.FieldPath
) -> EimEntry:
    """An :class:`EimEntry` from a decoded EimConfigurationData, the request ``raw`` it was
    decoded from, and the ``spans`` and ``path`` of that decode."""
    keys = _key_material(value, raw, spans, path)
    fields: dict[str, Any] = {"eim_id": value["eimId"]}
    if "eimFqdn" in value:
        fields["eim_fqdn"] = value["eimFqdn"]
    if "eimIdType" in value:
        fields["eim_id_type"] = value["eimIdType"]
    if "counterValue" in value:
        fields["counter_value"] = value["counterValue"]
    if "eimPublicKeyData" in value:
        fields["public_key"] = keys.get(b"\xa5\xa0")
        fields["certificate"] = keys.get(b"\xa5\xa1")
    if "trustedPublicKeyDataTls" in value:
        fields["tls_public_key"] = keys.get(b"\xa6\xa0")
        fields["tls_certificate"] = keys.get(b"\xa6\xa1")
    if "eimSupportedProtocol" in value:
        fields["supported_protocols"] = schema.bit_positions(value["eimSupportedProtocol"])
    if "euiccCiPKId" in value:
        fields["euicc_ci_pkid"] = bytes(value["euiccCiPKId"])
    if "indirectProfileDownload" in value:
        fields["indirect_profile_download"] = True
    return EimEntry(EimConfig(**fields), frozenset(value), value.get("associationToken"))


@lru_cache(maxsize=64)
def _public_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    return pki.load_public_key(spki)


#: Keys of eIM certificates already checked, by (certificate, trusted CI SKIs).
_CERTIFICATE_KEYS: dict[tuple[bytes, frozenset[bytes]], ec.EllipticCurvePublicKey] = {}


def _certificate_key(certificate: bytes, credentials: Credentials) -> ec.EllipticCurvePublicKey:
    cache_key = (certificate, frozenset(credentials.ci_public_keys))
    key = _CERTIFICATE_KEYS.get(cache_key)
    if key is None:
        cert = pki.load_certificate(certificate)
        key = pki.check_eim_certificate(cert, credentials.ci_public_keys)
        if len(_CERTIFICATE_KEYS) >= 64:
            _CERTIFICATE_KEYS.clear()
        _CERTIFICATE_KEYS[cache_key] = key
    return key


def verification_key(config: EimConfig, credentials: Credentials) -> ec.EllipticCurvePublicKey:
    """The key that verifies this eIM's eimSignature.

    Raises:
        EimConfigError: the configuration has no usable key (commandError or ciPKUnknown).
    """
    try:
        if config.public_key is not None:
            return _public_key(config.public_key)
        if config.certificate is not None:
            return _certificate_key(config.certificate, credentials)
    except pki.UnknownCi as exc:
        raise EimConfigError(CI_PK_UNKNOWN, str(exc)) from None
    except (ValueError, TypeError, pki.CertificateError, crypto.CryptoError) as exc:
        raise EimConfigError(COMMAND_ERROR, f"unusable eIM key: {exc}") from None
    raise EimConfigError(COMMAND_ERROR, "no eimPublicKeyData")


def check_entry(entry: EimEntry, credentials: Credentials, *, update: bool = False) -> None:
    """Rule 2 for one entry (``update``: an updateEim, where key data may be absent).

    Raises:
        EimConfigError: with the result code of the first failed check.
    """
    cfg = entry.config
    if not cfg.eim_id:
        raise EimConfigError(COMMAND_ERROR, "empty eimId")
    if cfg.eim_id_type is not None and cfg.eim_id_type not in _EIM_ID_TYPES:
        raise EimConfigError(COMMAND_ERROR, f"unknown eimIdType {cfg.eim_id_type}")
    if "eimPublicKeyData" in entry.present or not update:
        verification_key(cfg, credentials)
    if cfg.euicc_ci_pkid is not None and credentials.chain_for(cfg.euicc_ci_pkid) is None:
        raise EimConfigError(CI_PK_UNKNOWN, f"no eUICC chain under CI {cfg.euicc_ci_pkid.hex()}")
    if not 0 <= cfg.counter_value <= MAX_COUNTER:
        raise EimConfigError(COUNTER_VALUE_OUT_OF_RANGE, f"counterValue {cfg.counter_value}")
    token = entry.token
    if token is None or 1 <= token <= MAX_TOKEN:
        return
    if update:
        raise EimConfigError(COMMAND_ERROR, f"updateEim cannot set associationToken {token}")
    if token != TOKEN_REQUESTED:
        raise EimConfigError(INVALID_ASSOCIATION_TOKEN, f"associationToken {token}")


def associate(state: CardState, entry: EimEntry) -> tuple[CardState, int | None]:
    """Store a checked new configuration; return the state and the token allocated, if any."""
    allocated = None
    token = entry.token
    if token == TOKEN_REQUESTED:
        allocated = token = state.next_association_token
        if token > MAX_TOKEN:
            raise EimConfigError(UNDEFINED_ERROR, "association tokens exhausted")
        state = replace(state, next_association_token=token + 1)
    config = replace(entry.config, association_token=token)
    return replace(state, eim_configs=state.eim_configs + (config,)), allocated


# --- eCOs (SGP.32 v1.2 eIM Configuration Operations) -----------------------------------------


def add_eim(state: CardState, entry: EimEntry, credentials: Credentials) -> tuple[CardState, Any]:
    """eCO addEim: the state after it and the AddEimResult value."""
    try:
        check_entry(entry, credentials)
        if state.eim_config(entry.config.eim_id) is not None:
            raise EimConfigError(ASSOCIATED_EIM_ALREADY_EXISTS, "eimId already configured")
        if len(state.eim_configs) >= MAX_EIMS:
            raise EimConfigError(INSUFFICIENT_MEMORY, "no room for another eIM")
        new_state, allocated = associate(state, entry)
    except EimConfigError as exc:
        log.info("addEim refused: %s", exc)
        return state, ("addEimResultCode", exc.code)
    if allocated is not None:
        return new_state, ("associationToken", allocated)
    return new_state, ("addEimResultCode", OK)


_UPDATABLE = {
    "eimFqdn": ("eim_fqdn",),
    "eimIdType": ("eim_id_type",),
    "counterValue": ("counter_value",),
    "associationToken": ("association_token",),
    "eimPublicKeyData": ("public_key", "certificate"),
    "trustedPublicKeyDataTls": ("tls_public_key", "tls_certificate"),
    "eimSupportedProtocol": ("supported_protocols",),
    "euiccCiPKId": ("euicc_ci_pkid",),
    "indirectProfileDownload": ("indirect_profile_download",),
}


def update_eim(
    state: CardState, entry: EimEntry, credentials: Credentials
) -> tuple[CardState, int]:
    """eCO updateEim (rule 5): the state after it and the UpdateEimResult code."""
    current = state.eim_config(entry.config.eim_id)
    if current is None:
        return state, EIM_NOT_FOUND
    try:
        check_entry(entry, credentials, update=True)
    except EimConfigError as exc:
        log.info("updateEim refused: %s", exc)
        return state, exc.code
    received = replace(entry.config, association_token=entry.token)
    changes = {
        attr: getattr(received, attr)
        for name, attrs in _UPDATABLE.items()
        if name in entry.present
        for attr in attrs
    }
    updated = replace(current, **changes)
    configs = tuple(updated if c is current else c for c in state.eim_configs)
    return replace(state, eim_configs=configs), OK


def delete_eim(state: CardState, eim_id: str) -> tuple[CardState, int]:
    """eCO deleteEim: the state after it and the DeleteEimResult code."""
    kept = tuple(c for c in state.eim_configs if c.eim_id != eim_id)
    if len(kept) == len(state.eim_configs):
        return state, EIM_NOT_FOUND
    return replace(state, eim_configs=kept), OK if kept else LAST_EIM_DELETED


def list_eim(state: CardState) -> list[dict[str, Any]]:
    """eCO listEim: EimIdInfo values (eimIdType only for the OID and FQDN types)."""
    out: list[dict[str, Any]] = []
    for c in state.eim_configs:
        info: dict[str, Any] = {"eimId": c.eim_id}
        if c.eim_id_type in (1, 2):
            info["eimIdType"] = c.eim_id_type
        out.append(info)
    return out


# --- signatures (rule 6) ----------------------------------------------------------------------


def verify_signature(
    config: EimConfig, credentials: Credentials, signed: bytes, signature: bytes
) -> bytes | None:
    """Verify an eimSignature over the received ``signed`` bytes plus the token TLV.

    Returns the token TLV that verified (``b""`` for an eIM without token), or ``None``.
    """
    try:
        key = verification_key(config, credentials)
    except EimConfigError:
        return None
    for token_tlv in token_tlvs(config.association_token):
        try:
            crypto.verify_raw(key, signature, signed + token_tlv)
        except crypto.CryptoError:
            continue
        return token_tlv
    return None


def signing_chain(config: EimConfig, credentials: Credentials) -> SigningChain:
    """The eUICC chain that signs results for this eIM (its euiccCiPKId, else the first)."""
    chain = None
    if config.euicc_ci_pkid is not None:
        chain = credentials.chain_for(config.euicc_ci_pkid)
    chain = chain or credentials.chain_for(None)
    if chain is None:
        raise RuntimeError("the card has no signing chain")
    return chain


def signed_tlv(chain: SigningChain, tag: bytes, data: bytes, token_tlv: bytes) -> bytes:
    """``tag { data, 5F37 signature over data || token_tlv }``.

    Signed deterministically (RFC 6979): the same result data always gives the same bytes,
    so a command repeated after a power cut stores exactly what the first attempt would have.
    """
    signature = crypto.sign_raw(chain.private_key, data + token_tlv, deterministic=True)
    return tlv.encode_tlv(tag, data + tlv.encode_tlv(_SIGNATURE_TAG, signature))


def result_data_signed(
    eim_id: str, counter: int, transaction_id: bytes | None, seq_number: int, items: bytes
) -> bytes:
    """DER of EuiccPackageResultDataSigned; ``items`` are encoded EuiccResultData values."""
    body = tlv.encode_tlv(b"\x80", eim_id.encode()) + tlv.encode_tlv(b"\x81", der_integer(counter))
    if transaction_id is not None:
        body += tlv.encode_tlv(b"\x82", transaction_id)
    body += tlv.encode_tlv(b"\x83", der_integer(seq_number)) + tlv.encode_tlv(b"\x30", items)
    return tlv.encode_tlv(b"\x30", body)


def package_result(chain: SigningChain, data: bytes, token_tlv: bytes) -> bytes:
    """The ``BF51`` EuiccPackageResult with the signed result ``data`` (``A0`` alternative)."""
    return tlv.encode_tlv(b"\xbf\x51", signed_tlv(chain, b"\xa0", data, token_tlv))


# --- GetEimConfigurationData / AddInitialEim --------------------------------------------------


def encode_config(c: EimConfig) -> bytes:
    """The EimConfigurationData TLV (``30``) of a stored configuration (rule 7)."""
    return encode_eim_configuration(
        eim_id=c.eim_id,
        eim_fqdn=c.eim_fqdn,
        eim_id_type=c.eim_id_type,
        counter_value=c.counter_value,
        association_token=c.association_token,
        eim_public_key=c.public_key,
        eim_certificate=c.certificate,
        trusted_eim_pk_tls=c.tls_public_key,
        trusted_certificate_tls=c.tls_certificate,
        supported_protocols=c.supported_protocols,
        euicc_ci_pkid=c.euicc_ci_pkid,
        indirect_profile_download=c.indirect_profile_download,
    )


@HANDLERS.handles("GetEimConfigurationDataRequest")
def get_eim_configuration_data(ctx: IsdrContext, request: dict) -> bytes:
    configs = ctx.state.eim_configs
    criteria = request.get("searchCriteria")
    if criteria is not None:
        kind, wanted = criteria
        configs = tuple(c for c in configs if kind == "eimId" and c.eim_id == wanted)
    if ctx.config.sgp32 == "1.0":  # v1.0.1 has no indirectProfileDownload (89)
        configs = tuple(replace(c, indirect_profile_download=False) for c in configs)
    body = b"".join(encode_config(c) for c in configs)
    return tlv.encode_tlv(b"\xbf\x55", tlv.encode_tlv(b"\xa0", body))


def _entries(request: bytes) -> list[tuple[dict, schema.Spans, schema.FieldPath]]:
    """Decode an AddInitialEimRequest; pair each decoded entry with where it was found."""
    try:
        value, spans = schema.decode_spans("AddInitialEimRequest", request)
    except schema.DecodeError as exc:
        log.info("undecodable AddInitialEim: %s", exc)
        raise StatusWordError(0x6A80) from None
    return [
        (entry, spans, ("eimConfigurationDataList", i))
        for i, entry in enumerate(value["eimConfigurationDataList"])
    ]


def _add_initial_error(code: int) -> bytes:
    return schema.encode("AddInitialEimResponse", ("addInitialEimError", code))


def add_initial_eim(ctx: IsdrContext, request: bytes) -> bytes:
    """ES10b.AddInitialEim (rules 1-3); gets the raw request to keep key bytes as received."""
    entries = _entries(request)
    state = ctx.state
    if state.eim_configs:
        return _add_initial_error(ASSOCIATED_EIM_ALREADY_EXISTS)
    if not entries:
        return _add_initial_error(COMMAND_ERROR)
    answers: list[tuple[str, Any]] = []
    try:
        parsed = [parse_entry(value, request, spans, path) for value, spans, path in entries]
        for entry in parsed:
            check_entry(entry, ctx.credentials)
        if len({e.config.eim_id for e in parsed}) != len(parsed):
            raise EimConfigError(COMMAND_ERROR, "one eimId twice")
        if len(parsed) > MAX_EIMS:
            raise EimConfigError(INSUFFICIENT_MEMORY, "too many eIMs")
        for entry in parsed:
            state, allocated = associate(state, entry)
            answers.append(
                ("addOk", None) if allocated is None else ("associationToken", allocated)
            )
    except EimConfigError as exc:
        log.info("AddInitialEim refused: %s", exc)
        return _add_initial_error(exc.code)
    ctx.commit(state)
    return schema.encode("AddInitialEimResponse", ("addInitialEimOk", answers))


HANDLERS.handles("AddInitialEimRequest")(RawHandler(add_initial_eim))
