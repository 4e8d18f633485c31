"""Profile download through the card's APDU interface: AuthenticateServer, PrepareDownload,
LoadBoundProfilePackage and CancelSession, against an SM-DP+ role played by this test.

Every refusal ends with the exact error of GSMA SGP.22 v2.5 (§5.7.13, §5.7.5, §2.5.6), and
leaves the card's profiles byte-identical and its pending notifications unchanged except for
the one failure ``BF37`` a BPP error produces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from euicc_protocol import bpp, crypto, pki, saip, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import (
    Credential,
    TestPki,
    generate_test_pki,
    issue_crl,
    issue_server_certificate,
    load_sgp26,
)
from euicc_sim import download
from euicc_sim.card import Euicc
from euicc_sim.config import CardConfig, RatRule
from euicc_sim.state import CardState
from euicc_sim.storage import CrashingIO, DirectoryStorage, SimulatedCrash
from ipa.errors import StatusWordError
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PACKAGES = sorted(p.name for p in TS48.glob("*.der"))
VECTOR = json.loads((Path(__file__).parent / "data" / "bpp_conformant_nist.json").read_text())
ADDRESS = "testsmdpplus1.example.com"
SMDP_OID = "2.999.10"
EID = "89049032123451234512345678901235"  # the SGP.26 eUICC, also the conformant vector's
SIG = b"\x5f\x37"
PROFILES_REQUEST = schema.encode("ProfileInfoListRequest", {})


# --- the SM-DP+ role --------------------------------------------------------------------------


def elements(data: bytes) -> list[bytes]:
    """The complete TLVs inside the value of the TLV ``data`` starts with."""
    outer = tlv.read_tlv(data)
    out, pos = [], outer.value_start
    for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
        out.append(data[pos : item.end])
        pos = item.end
    return out


def ctx_params1() -> bytes:
    return schema.encode(
        "CtxParams1",
        (
            "ctxParamsForCommonAuthentication",
            {
                "matchingId": "ABC-123",
                "deviceInfo": {"tac": bytes.fromhex("35290611"), "deviceCapabilities": {}},
            },
        ),
    )


def store_metadata(upp: bytes, **fields: Any) -> bytes:
    """A StoreMetadataRequest for ``upp`` (ICCID from its header)."""
    value: dict[str, Any] = {
        "iccid": saip.read_package(upp).iccid_ef,
        "serviceProviderName": "Test SP",
        "profileName": "Test profile",
        "notificationConfigurationInfo": [
            {"profileManagementOperation": schema.bits([1, 2, 3]), "notificationAddress": ADDRESS}
        ],
    }
    value.update(fields)
    return schema.encode("SGP32-StoreMetadataRequest", value)


@dataclass
class Download:
    """One download session driven through the card by an SM-DP+ with ``pki``'s credentials.

    Each step builds the request from the fields (tests override them to break one thing),
    sends it, and keeps what the next step needs from the answer.
    """

    card: Euicc
    pki: TestPki
    transaction_id: bytes = field(default_factory=lambda: os.urandom(16))
    server_challenge: bytes = field(default_factory=lambda: os.urandom(16))
    challenge: bytes = b""
    euicc_signature1: bytes = b""  # complete 5F37 TLV
    euicc_otpk: bytes = b""
    euicc_certificate: x509.Certificate | None = None

    @property
    def client(self) -> Es10Client:
        return Es10Client.open(InProcessTransport(self.card))

    def send(self, payload: bytes) -> bytes:
        with self.client as client:
            return client.exchange(payload)

    def get_challenge(self) -> bytes:
        with self.client as client:
            self.challenge = client.get_euicc_challenge()
        return self.challenge

    def authenticate_request(
        self,
        *,
        dp_auth: Credential | None = None,
        ci_pkid: bytes | None = None,
        challenge: bytes | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        dp_auth = dp_auth or self.pki.dp_auth
        signed1 = schema.encode(
            "ServerSigned1",
            {
                "transactionId": self.transaction_id,
                "euiccChallenge": self.challenge if challenge is None else challenge,
                "serverAddress": ADDRESS,
                "serverChallenge": self.server_challenge,
            },
        )
        signature = crypto.sign_raw(signer or dp_auth.key, signed1)
        return tlv.encode_tlv(
            b"\xbf\x38",
            signed1
            + tlv.encode_tlv(SIG, signature)
            + tlv.encode_tlv(b"\x04", self.pki.ci.ski if ci_pkid is None else ci_pkid)
            + dp_auth.cert_der
            + ctx_params1(),
        )

    def authenticate(self, request: bytes | None = None) -> bytes:
        """AuthenticateServer; on success check the eUICC's answer as an SM-DP+ would."""
        if request is None:
            if not self.challenge:
                self.get_challenge()
            request = self.authenticate_request()
        response = self.send(request)
        kind, value = schema.decode("SGP32-AuthenticateServerResponse", response)
        if kind != "authenticateResponseOk":
            return response
        euicc_signed1, signature1, euicc_der, eum_der = elements(elements(response)[0])
        euicc_cert = pki.load_certificate(euicc_der)
        eum_cert = pki.load_certificate(eum_der)
        assert pki.check_euicc_chain(euicc_cert, eum_cert, self.pki.ci_keys()) == self.card.eid
        key = euicc_cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        crypto.verify_raw(key, value["euiccSignature1"], euicc_signed1)
        signed = value["euiccSigned1"]
        assert signed["transactionId"] == self.transaction_id
        assert signed["serverAddress"] == ADDRESS
        assert signed["serverChallenge"] == self.server_challenge
        assert elements(euicc_signed1)[-1] == ctx_params1()  # copied byte for byte
        self.euicc_signature1 = signature1
        self.euicc_certificate = euicc_cert
        return response

    def prepare_request(
        self,
        *,
        dp_pb: Credential | None = None,
        transaction_id: bytes | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
        signed_suffix: bytes | None = None,
        bpp_euicc_otpk: bytes | None = None,
        hash_cc: bytes | None = None,
    ) -> bytes:
        dp_pb = dp_pb or self.pki.dp_pb
        value: dict[str, Any] = {
            "transactionId": self.transaction_id if transaction_id is None else transaction_id,
            "ccRequiredFlag": hash_cc is not None,
        }
        if bpp_euicc_otpk is not None:
            value["bppEuiccOtpk"] = bpp_euicc_otpk
        signed2 = schema.encode("SmdpSigned2", value)
        suffix = self.euicc_signature1 if signed_suffix is None else signed_suffix
        signature = crypto.sign_raw(signer or dp_pb.key, signed2 + suffix)
        body = signed2 + tlv.encode_tlv(SIG, signature)
        if hash_cc is not None:
            body += tlv.encode_tlv(b"\x04", hash_cc)
        return tlv.encode_tlv(b"\xbf\x21", body + dp_pb.cert_der)

    def prepare(self, request: bytes | None = None) -> bytes:
        """PrepareDownload; on success verify euiccSignature2 and keep euiccOtpk."""
        if request is None:
            request = self.prepare_request()
        response = self.send(request)
        kind, value = schema.decode("SGP32-PrepareDownloadResponse", response)
        if kind != "downloadResponseOk":
            return response
        assert self.euicc_certificate is not None
        euicc_signed2, _ = elements(elements(response)[0])
        smdp_signature2 = elements(request)[1]
        key = self.euicc_certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        crypto.verify_raw(key, value["euiccSignature2"], euicc_signed2 + smdp_signature2)
        assert value["euiccSigned2"]["transactionId"] == self.transaction_id
        self.euicc_otpk = value["euiccSigned2"]["euiccOtpk"]
        return response

    def start(self) -> Download:
        """Challenge, AuthenticateServer and PrepareDownload, all expected to succeed."""
        self.get_challenge()
        assert schema.decode("SGP32-AuthenticateServerResponse", self.authenticate())[0] == (
            "authenticateResponseOk"
        )
        assert schema.decode("SGP32-PrepareDownloadResponse", self.prepare())[0] == (
            "downloadResponseOk"
        )
        return self

    def start_reusing(self, otsk: ec.EllipticCurvePrivateKey) -> Download:
        """Like :meth:`start`, but the card is given ``otsk`` to keep and PrepareDownload asks
        to reuse it (bppEuiccOtpk, SGP.22 §5.7.5), so BPPs bound to it can be loaded again
        and again."""
        download.keep_one_time_key(self.card.context, otsk)
        point = crypto.public_point(otsk.public_key())
        self.get_challenge()
        assert schema.decode("SGP32-AuthenticateServerResponse", self.authenticate())[0] == (
            "authenticateResponseOk"
        )
        self.euicc_otpk = b""
        self.prepare(self.prepare_request(bpp_euicc_otpk=point))
        assert self.euicc_otpk == point
        return self

    def bpp(self, upp: bytes, metadata: bytes | None = None, **kwargs: Any) -> list[bytes]:
        built = bpp.build_bound_profile_package(
            upp,
            transaction_id=self.transaction_id,
            eid=self.card.context.eid,
            euicc_otpk_point=self.euicc_otpk,
            smdp_pb_key=self.pki.dp_pb.key,
            store_metadata=store_metadata(upp) if metadata is None else metadata,
            **kwargs,
        )
        return built.payloads()

    def load(self, payloads: list[bytes]) -> tuple[int, bytes]:
        """Send the pieces like an IPAd: stop at the first answer with data; return
        (index of that piece, answer)."""
        with self.client as client:
            for index, piece in enumerate(payloads):
                answer = client.exchange(piece)
                if answer:
                    return index, answer
        return len(payloads), b""


# --- cards and checks ---------------------------------------------------------------------------


def new_card(pki_set: TestPki | None = None, **config: Any) -> Euicc:
    """A card trusting ``pki_set``'s CI with its eUICC credentials (SGP.26 when None); a
    consumer card unless ``kind`` says otherwise (the tests switch profiles through ES10c)."""
    config.setdefault("kind", "consumer")
    base = CardConfig(eid=EID, **config)
    if pki_set is None:
        return Euicc.create(None, eid=EID, config=base)
    return Euicc.create(
        None,
        euicc_key=pki_set.euicc.key_pem(),
        euicc_certificate=pki_set.euicc.cert_der,
        eum_certificate=pki_set.eum.cert_der,
        ci_certificates=[pki_set.ci.cert_der],
        config=base,
    )


def with_history(card: Euicc) -> Euicc:
    """Give a card a profile and a pending notification, so 'unchanged' means something."""
    card.preload((TS48 / "TS48V1-A-UNIQUE.der").read_bytes(), notification_address="a.example")
    with Es10Client.open(InProcessTransport(card)) as client:
        client.enable_profile(iccid=card.state.profiles[0].iccid)
    assert len(card.state.notifications) == 1
    return card


@dataclass(frozen=True)
class Snapshot:
    state: CardState
    profiles_info: bytes

    @classmethod
    def of(cls, card: Euicc) -> Snapshot:
        with Es10Client.open(InProcessTransport(card)) as client:
            return cls(card.state, client.exchange(PROFILES_REQUEST))

    def assert_unchanged(self, card: Euicc, *, new_notifications: int = 0) -> None:
        after = Snapshot.of(card)
        assert after.profiles_info == self.profiles_info
        assert after.state.profiles == self.state.profiles
        old = self.state.notifications
        assert after.state.notifications[: len(old)] == old
        assert len(after.state.notifications) == len(old) + new_notifications


def check_result(session: Download, answer: bytes) -> dict[str, Any]:
    """Decode a BF37, verify euiccSignPIR, and check it is stored as a pending notification."""
    value = schema.decode("SGP32-ProfileInstallationResult", answer)
    assert schema.encode("SGP32-ProfileInstallationResult", value) == answer
    data = elements(answer)[0]
    assert data[:2] == b"\xbf\x27"
    assert session.euicc_certificate is not None
    key = session.euicc_certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    crypto.verify_raw(key, value["euiccSignPIR"], data)
    result = value["profileInstallationResultData"]
    assert result["transactionId"] == session.transaction_id
    assert result["smdpOid"] == SMDP_OID
    meta = result["notificationMetadata"]
    assert meta["notificationAddress"] == ADDRESS
    assert schema.bit_positions(meta["profileManagementOperation"]) == {0}
    stored = session.card.state.notifications[-1]
    assert (stored.seq_number, stored.encoded) == (meta["seqNumber"], answer)
    with session.client as client:
        listed = client.retrieve_notifications_list(seq_number=meta["seqNumber"])
    assert [n.raw for n in listed] == [answer]
    return dict(result)


def assert_bpp_error(
    session: Download, answer: bytes, command: int, reason: int, *, iccid: bytes | None = None
) -> dict[str, Any]:
    result = check_result(session, answer)
    kind, error = result["finalResult"]
    assert kind == "errorResult"
    assert (error["bppCommandId"], error["errorReason"]) == (command, reason)
    assert result["notificationMetadata"].get("iccid") == iccid
    return dict(error)


def auth_error(answer: bytes) -> tuple[bytes, int]:
    kind, value = schema.decode("SGP32-AuthenticateServerResponse", answer)
    assert kind == "authenticateResponseError"
    return value["transactionId"], value["authenticateErrorCode"]


def download_error(answer: bytes) -> tuple[bytes, int]:
    kind, value = schema.decode("SGP32-PrepareDownloadResponse", answer)
    assert kind == "downloadResponseError"
    return value["transactionId"], value["downloadErrorCode"]


# --- full downloads --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(Curve), ids=lambda c: c.suffix)
def generated(request: pytest.FixtureRequest) -> TestPki:
    return generate_test_pki(request.param, EID)


@pytest.mark.parametrize("package", PACKAGES)
def test_download_with_a_generated_pki_installs_every_ts48_package(
    generated: TestPki, package: str
) -> None:
    full_download(new_card(generated), generated, (TS48 / package).read_bytes())


@pytest.mark.parametrize("curve", list(Curve), ids=lambda c: c.suffix)
@pytest.mark.parametrize("package", ["TS48V1-B-UNIQUE.der", "TS48V5-SAIP2-1A-NOBERTLV-UNIQUE.der"])
def test_download_with_the_sgp26_pki_on_a_card_with_both_curves(curve: Curve, package: str) -> None:
    card = with_history(new_card())
    full_download(card, load_sgp26(curve), (TS48 / package).read_bytes())


def full_download(card: Euicc, pki_set: TestPki, upp: bytes) -> None:
    before = card.state
    session = Download(card, pki_set).start()
    crypto.public_key_from_point(pki_set.curve, session.euicc_otpk)  # on the DPpb curve
    payloads = session.bpp(upp)
    index, answer = session.load(payloads)
    assert index == len(payloads) - 1  # only the last 86 is answered
    result = check_result(session, answer)
    kind, success = result["finalResult"]
    assert kind == "successResult"
    assert success["simaResponse"] == bytes.fromhex("3007A00530038001 00".replace(" ", ""))
    iccid = saip.read_package(upp).iccid_ef
    assert result["notificationMetadata"]["iccid"] == iccid
    with session.client as client:
        info = {p.iccid_raw: p for p in client.get_profiles_info()}
    installed = info[iccid]
    assert installed.isdp_aid == success["aid"]
    assert installed.profile_state.name == "DISABLED"
    assert installed.profile_name == "Test profile" and installed.service_provider_name == "Test SP"
    assert card.profile_package(card.state.profile_by_iccid(iccid)) == upp  # type: ignore[arg-type]
    assert card.state.profiles[: len(before.profiles)] == before.profiles
    assert len(card.state.notifications) == len(before.notifications) + 1
    # The session is over: more pieces have no BPP to go to.
    with pytest.raises(StatusWordError) as err:
        session.send(payloads[-1])
    assert err.value.sw == 0x6A88


def test_the_conformant_vector_loads_into_a_card_holding_its_one_time_key() -> None:
    """The exact payload sequence of the test vector bpp_conformant_nist.json installs
    TS48V5-SAIP2-3-NOBERTLV-UNIQUE; the card gets the vector's otSK as a kept key pair and a
    PrepareDownload asks to reuse it (bppEuiccOtpk, SGP.22 §5.7.5)."""
    nist = Curve.NIST_P256
    card = new_card()
    assert card.eid == VECTOR["eid"]
    session = Download(
        card, load_sgp26(nist), transaction_id=bytes.fromhex(VECTOR["transaction_id"])
    )
    session.get_challenge()
    session.authenticate()
    otsk = crypto.private_key_from_scalar(nist, bytes.fromhex(VECTOR["euicc_otsk"]))
    download.keep_one_time_key(card.context, otsk)
    otpk = bytes.fromhex(VECTOR["euicc_otpk"])
    session.prepare(session.prepare_request(bpp_euicc_otpk=otpk))
    assert session.euicc_otpk == otpk
    payloads = [bytes.fromhex(p) for p in VECTOR["es10b_load_bpp_payloads_hex"]]
    index, answer = session.load(payloads)
    assert index == len(payloads) - 1
    result = check_result(session, answer)
    assert result["finalResult"][0] == "successResult"
    profile = card.state.profiles[0]
    assert profile.iccid == result["notificationMetadata"]["iccid"]
    package = card.profile_package(profile)
    assert package is not None and hashlib.sha256(package).hexdigest() == VECTOR["upp_sha256"]
    assert profile.service_provider_name == "Test SP"
    assert [c.address for c in profile.notification_config] == [ADDRESS]
    # The key did its job: it is not kept for another attempt.
    assert "download-otsk" not in card.context.retained


def test_a_retried_prepare_download_reuses_the_kept_one_time_key() -> None:
    card = new_card()
    pki_set = load_sgp26(Curve.NIST_P256)
    first = Download(card, pki_set).start()
    # The BPP never arrives; the SM-DP+ binds the retry to the same key.
    retry = Download(card, pki_set, transaction_id=first.transaction_id)
    retry.get_challenge()
    retry.authenticate()
    retry.prepare(retry.prepare_request(bpp_euicc_otpk=first.euicc_otpk))
    assert retry.euicc_otpk == first.euicc_otpk
    upp = (TS48 / PACKAGES[0]).read_bytes()
    _, answer = retry.load(first.bpp(upp))
    assert check_result(retry, answer)["finalResult"][0] == "successResult"
    # Used: a third attempt asking for it gets a fresh key.
    third = Download(card, pki_set)
    third.get_challenge()
    third.authenticate()
    third.prepare(third.prepare_request(bpp_euicc_otpk=first.euicc_otpk))
    assert third.euicc_otpk != first.euicc_otpk


def test_an_unknown_bpp_euicc_otpk_gets_a_fresh_key() -> None:
    card = new_card()
    session = Download(card, load_sgp26(Curve.NIST_P256))
    session.get_challenge()
    session.authenticate()
    other = crypto.public_point(crypto.generate_private_key(Curve.NIST_P256).public_key())
    session.prepare(session.prepare_request(bpp_euicc_otpk=other))
    assert session.euicc_otpk not in (b"", other)


def test_hash_cc_is_copied_into_euicc_signed2() -> None:
    session = Download(new_card(), load_sgp26(Curve.NIST_P256))
    session.get_challenge()
    session.authenticate()
    hash_cc = hashlib.sha256(hashlib.sha256(b"1234").digest() + session.transaction_id).digest()
    response = session.prepare(session.prepare_request(hash_cc=hash_cc))
    signed2 = schema.decode("SGP32-PrepareDownloadResponse", response)[1]["euiccSigned2"]
    assert signed2["hashCc"] == hash_cc


def test_ppr_allowed_by_the_rat_is_installed_with_the_profile() -> None:
    card = new_card(rat=(RatRule((1,), ("32F4EE",)),))
    session = Download(card, load_sgp26(Curve.NIST_P256)).start()
    upp = (TS48 / PACKAGES[0]).read_bytes()
    metadata = store_metadata(
        upp, profilePolicyRules=schema.bits([1]), profileOwner={"mccMnc": bytes.fromhex("32F410")}
    )
    _, answer = session.load(session.bpp(upp, metadata))
    assert check_result(session, answer)["finalResult"][0] == "successResult"
    profile = card.state.profiles[0]
    assert (profile.ppr1, profile.ppr2) == (True, False)
    assert profile.profile_owner is not None and profile.profile_owner.mcc_mnc == b"\x32\xf4\x10"


# --- AuthenticateServer refusals ------------------------------------------------------------


@pytest.fixture
def sgp26_card() -> Euicc:
    return with_history(new_card())


NIST = load_sgp26(Curve.NIST_P256)


def other_pki() -> TestPki:
    return generate_test_pki(Curve.NIST_P256)


def _server_cert(
    ci: Credential, key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, *, rid: bool
) -> Credential:
    """A DPauth certificate built by hand: without SAN registeredID or with an odd key."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd SM-DP+")]))
        .issuer_name(ci.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=10))
        .add_extension(x509.AuthorityKeyIdentifier(ci.ski, None, None), critical=False)
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(pki.CertRole.DP_AUTH.value), None)]
            ),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )
    if rid:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RegisteredID(x509.ObjectIdentifier(SMDP_OID))]),
            critical=False,
        )
    cert = builder.sign(ci.key, hashes.SHA256())
    private = key if isinstance(key, ec.EllipticCurvePrivateKey) else ci.key
    return Credential(private, cert)


AUTH_CASES: dict[str, tuple[Callable[[Download], bytes], int]] = {
    "unknown CI": (lambda s: s.authenticate_request(ci_pkid=os.urandom(20)), 7),
    "DPauth from another CI": (lambda s: s.authenticate_request(dp_auth=other_pki().dp_auth), 1),
    "bad serverSignature1": (
        lambda s: s.authenticate_request(signer=crypto.generate_private_key(Curve.NIST_P256)),
        2,
    ),
    "challenge mismatch": (lambda s: s.authenticate_request(challenge=os.urandom(16)), 6),
    "DPpb used as DPauth": (lambda s: s.authenticate_request(dp_auth=NIST.dp_pb), 1),
    "DStls used as DPauth": (lambda s: s.authenticate_request(dp_auth=NIST.dp_tls), 1),
    "no SAN registeredID": (
        lambda s: s.authenticate_request(
            dp_auth=_server_cert(NIST.ci, crypto.generate_private_key(Curve.NIST_P256), rid=False)
        ),
        5,
    ),
    "P-384 key": (
        lambda s: s.authenticate_request(
            dp_auth=_server_cert(NIST.ci, ec.generate_private_key(ec.SECP384R1()), rid=True),
            signer=NIST.dp_auth.key,  # never checked: the certificate is refused first
        ),
        3,
    ),
}


@pytest.mark.parametrize("case", sorted(AUTH_CASES))
def test_authenticate_server_refusals(sgp26_card: Euicc, case: str) -> None:
    build, code = AUTH_CASES[case]
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST)
    session.get_challenge()
    answer = session.authenticate(build(session))
    assert answer[:2] == b"\xbf\x38"
    assert auth_error(answer) == (session.transaction_id, code)
    assert elements(answer)[0][:1] == b"\xa1"
    # The session is gone: PrepareDownload has no context.
    assert download_error(session.prepare(session.prepare_request())) == (
        session.transaction_id,
        4,
    )
    before.assert_unchanged(sgp26_card)


def test_authenticate_server_without_a_challenge_is_no_session_context(sgp26_card: Euicc) -> None:
    session = Download(sgp26_card, NIST)
    session.get_challenge()
    sgp26_card.reset()  # the challenge was volatile
    answer = session.authenticate(session.authenticate_request())
    assert auth_error(answer) == (session.transaction_id, 4)
    # A challenge serves one AuthenticateServer only.
    session.get_challenge()
    session.authenticate()
    assert auth_error(session.authenticate(session.authenticate_request())) == (
        session.transaction_id,
        4,
    )


@pytest.mark.parametrize("tag", ["BF38", "BF21"])
def test_undecodable_authenticate_server_and_prepare_download_are_6a80(
    sgp26_card: Euicc, tag: str
) -> None:
    session = Download(sgp26_card, NIST)
    with pytest.raises(StatusWordError) as err:
        session.send(tlv.encode_tlv(bytes.fromhex(tag), b"\x30\x00"))
    assert err.value.sw == 0x6A80


# --- PrepareDownload refusals ---------------------------------------------------------------

PREPARE_CASES: dict[str, tuple[Callable[[Download], bytes], int]] = {
    "wrong transactionId in smdpSigned2": (
        lambda s: s.prepare_request(transaction_id=os.urandom(16)),
        5,
    ),
    "bad smdpSignature2": (
        lambda s: s.prepare_request(signer=crypto.generate_private_key(Curve.NIST_P256)),
        2,
    ),
    "smdpSignature2 without the 5F37 header of euiccSignature1": (
        lambda s: s.prepare_request(signed_suffix=s.euicc_signature1[3:]),
        2,
    ),
    "DPauth used as DPpb": (lambda s: s.prepare_request(dp_pb=NIST.dp_auth), 1),
    "DPpb of another SM-DP+ OID": (
        lambda s: s.prepare_request(
            dp_pb=issue_server_certificate(NIST.ci, pki.CertRole.DP_PB, "2.999.12")
        ),
        1,
    ),
    "DPpb from another CI": (lambda s: s.prepare_request(dp_pb=other_pki().dp_pb), 1),
}


@pytest.mark.parametrize("case", sorted(PREPARE_CASES))
def test_prepare_download_refusals(sgp26_card: Euicc, case: str) -> None:
    build, code = PREPARE_CASES[case]
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST)
    session.get_challenge()
    session.authenticate()
    request = build(session)
    signed2 = schema.decode("PrepareDownloadRequest", request)["smdpSigned2"]
    assert download_error(session.prepare(request)) == (signed2["transactionId"], code)
    # Dropped: a correct PrepareDownload now has no session either.
    assert download_error(session.prepare(session.prepare_request()))[1] == 4
    before.assert_unchanged(sgp26_card)


def test_prepare_download_without_session_and_twice_is_no_session_context(
    sgp26_card: Euicc,
) -> None:
    session = Download(sgp26_card, NIST)
    assert download_error(session.prepare(session.prepare_request()))[1] == 4
    session.start()
    assert download_error(session.prepare(session.prepare_request()))[1] == 4


# --- BPP refusals ---------------------------------------------------------------------------

UPP = (TS48 / "TS48V3-SAIP2-1-NOBERTLV-UNIQUE.der").read_bytes()
UPP_ICCID = saip.read_package(UPP).iccid_ef


def _flip(piece: bytes, index: int) -> bytes:
    data = bytearray(piece)
    data[index] ^= 0x01
    return bytes(data)


def _replace_isc(session: Download, payloads: list[bytes], **kwargs: Any) -> list[bytes]:
    """Swap in a BF23 signed by DPpb but carrying other values."""
    first = payloads[0]
    isc_start = tlv.read_length(first, 2)[1]
    isc = schema.decode("InitialiseSecureChannelRequest", first[isc_start:])
    crt = isc["controlRefTemplate"]
    values: dict[str, Any] = {
        "transaction_id": session.transaction_id,
        "host_id": crt["hostId"],
        "smdp_otpk": isc["smdpOtpk"],
        "euicc_otpk": session.euicc_otpk,
        "smdp_pb_key": session.pki.dp_pb.key,
    }
    values.update(kwargs)
    new = bpp.build_initialise_secure_channel(**values)
    bpp_length = tlv.read_length(first, 2)[0] - len(first[isc_start:]) + len(new)
    return [b"\xbf\x36" + tlv.encode_length(bpp_length) + new, *payloads[1:]]


def _shorten_in_a6(first: bytes) -> bytes:
    """The first piece with the length of the first TLV inside BF23's A6 (the CRT) one less:
    the BF23 and BF36 lengths still add up, only the inside of A6 no longer parses."""
    isc_start = tlv.read_length(first, 2)[1]
    isc = tlv.read_tlv(first, isc_start)
    crt = next(t for t in tlv.iter_tlvs(first, isc.value_start, isc.value_end) if t.tag == b"\xa6")
    data = bytearray(first)
    data[crt.value_start + 1] -= 1
    return bytes(data)


def _profile_pieces(payloads: list[bytes]) -> list[int]:
    return [i for i, p in enumerate(payloads) if p[0] == 0x86]


BPP_CASES: dict[str, tuple[Callable[[Download, list[bytes]], list[bytes]], int, int, bool]] = {
    # name: (break the pieces, bppCommandId, errorReason, ICCID in the result)
    "bad smdpSign": (lambda s, p: [_flip(p[0], -1), *p[1:]], 0, 2, False),
    "wrong CRT keyType": (lambda s, p: _replace_isc(s, p, key_type=0x89), 0, 4, False),
    "wrong CRT keyLen": (lambda s, p: _replace_isc(s, p, key_length=0x20), 0, 4, False),
    # hostId is OctetTo16 (SIZE(1..16)): the strict decoder refuses an empty one.
    "empty hostId": (lambda s, p: _replace_isc(s, p, host_id=b""), 0, 1, False),
    "wrong transactionId in BF23": (
        lambda s, p: _replace_isc(s, p, transaction_id=os.urandom(16)),
        0,
        3,
        False,
    ),
    "wrong remoteOpId": (lambda s, p: _replace_isc(s, p, remote_op_id=2), 0, 5, False),
    # Once answered 6F00: the lenient decoder took it, a second TLV reader did not.
    "a length inside A6 shortened": (lambda s, p: [_shorten_in_a6(p[0]), *p[1:]], 0, 1, False),
    "BF36 header without BF23": (lambda s, p: [p[0][:4] + p[1], *p[2:]], 0, 1, False),
    "tampered 87 MAC": (lambda s, p: [p[0], _flip(p[1], -1), *p[2:]], 1, 8, False),
    "A0 skipped": (lambda s, p: [p[0], *p[2:]], 1, 1, False),
    "A1 header skipped": (lambda s, p: [*p[:2], *p[3:]], 2, 1, False),
    "A1 header too short": (
        lambda s, p: [*p[:2], p[2][:-1] + bytes([p[2][-1] - 1]), *p[3:]],
        2,
        1,
        False,
    ),
    "tampered 88": (lambda s, p: [*p[:3], _flip(p[3], 10), *p[4:]], 2, 8, False),
    "tampered A2": (lambda s, p: [*p[:4], _flip(p[4], 8), *p[5:]], 4, 8, True),
    "A3 header skipped": (lambda s, p: [*p[:5], *p[6:]], 5, 1, True),
    "A3 shorter than the BPP": (
        lambda s, p: [*p[:5], p[5][:-1] + bytes([p[5][-1] - 1]), *p[6:]],
        5,
        1,
        True,
    ),
    "tampered 86 MAC": (lambda s, p: [*p[:7], _flip(p[7], -3), *p[8:]], 5, 8, True),
    "86 segments out of order": (lambda s, p: [*p[:6], p[7], p[6], *p[8:]], 5, 8, True),
    "an 86 skipped": (lambda s, p: [*p[:7], *p[8:]], 5, 8, True),
    "a second BF36 mid-BPP": (lambda s, p: [*p[:7], p[0], *p[7:]], 5, 1, True),
    "an 88 after the metadata": (lambda s, p: [*p[:4], p[3], *p[4:]], 5, 1, True),
    "truncated 86": (lambda s, p: [*p[:6], p[6][:-9] + p[6][-8:], *p[7:]], 5, 1, True),
}


@pytest.mark.parametrize("case", sorted(BPP_CASES))
def test_bpp_refusals_commit_only_the_failure_notification(sgp26_card: Euicc, case: str) -> None:
    breaker, command, reason, with_iccid = BPP_CASES[case]
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST).start()
    payloads = breaker(session, session.bpp(UPP))
    _, answer = session.load(payloads)
    assert_bpp_error(session, answer, command, reason, iccid=UPP_ICCID if with_iccid else None)
    before.assert_unchanged(sgp26_card, new_notifications=1)
    with pytest.raises(StatusWordError) as err:  # the BPP is over
        session.send(payloads[-1])
    assert err.value.sw == 0x6A88


def test_iccid_already_on_the_card_is_refused_at_store_metadata(sgp26_card: Euicc) -> None:
    sgp26_card.preload(UPP)
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST).start()
    index, answer = session.load(session.bpp(UPP))
    assert index == 3  # the (only) 88 segment completes the metadata
    assert_bpp_error(session, answer, 2, 9, iccid=UPP_ICCID)
    before.assert_unchanged(sgp26_card, new_notifications=1)


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"profileClass": 7}, 6),
        ({"profilePolicyRules": schema.bits([1])}, 15),  # PPR1 without a profile owner
        ({"profilePolicyRules": schema.bits([2]), "profileOwner": {"mccMnc": b"\x32\xf4\x10"}}, 15),
    ],
)
def test_store_metadata_policy_refusals(fields: dict[str, Any], reason: int) -> None:
    card = with_history(new_card(rat=(RatRule((1,), ("EEEEEE",)),)))
    before = Snapshot.of(card)
    session = Download(card, NIST).start()
    _, answer = session.load(session.bpp(UPP, store_metadata(UPP, **fields)))
    assert_bpp_error(session, answer, 2, reason, iccid=UPP_ICCID)
    before.assert_unchanged(card, new_notifications=1)


def test_metadata_iccid_other_than_the_package_header_is_data_mismatch(sgp26_card: Euicc) -> None:
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST).start()
    other = bytes.fromhex("98001032547698103214")
    index, answer = session.load(session.bpp(UPP, store_metadata(UPP, iccid=other)))
    assert_bpp_error(session, answer, 5, 13, iccid=other)
    before.assert_unchanged(sgp26_card, new_notifications=1)


def test_a_package_that_is_no_saip_is_pe_processing_error(sgp26_card: Euicc) -> None:
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST).start()
    broken = UPP[:-200]  # the end PE is cut off
    _, answer = session.load(session.bpp(broken, store_metadata(UPP)))
    error = assert_bpp_error(session, answer, 5, 12, iccid=UPP_ICCID)
    sima = schema.decode("EUICCResponse", error["simaResponse"])
    assert sima["peStatus"][0]["status"] != 0 and "profileInstallationAborted" in sima
    before.assert_unchanged(sgp26_card, new_notifications=1)


def test_no_room_for_a_profile_fails_configure_isdp() -> None:
    card = with_history(new_card(max_profiles=1))
    before = Snapshot.of(card)
    session = Download(card, NIST).start()
    index, answer = session.load(session.bpp(UPP))
    assert index == 1
    assert_bpp_error(session, answer, 1, 10)
    before.assert_unchanged(card, new_notifications=1)


def test_a_package_larger_than_the_free_memory_fails_while_loading() -> None:
    preloaded = (TS48 / "TS48V1-A-UNIQUE.der").stat().st_size
    card = with_history(new_card(profile_memory=preloaded + len(UPP) // 2))
    before = Snapshot.of(card)
    session = Download(card, NIST).start()
    payloads = session.bpp(UPP)
    index, answer = session.load(payloads)
    assert 6 <= index < len(payloads) - 1
    assert_bpp_error(session, answer, 5, 10, iccid=UPP_ICCID)
    before.assert_unchanged(card, new_notifications=1)


@pytest.mark.parametrize("interruption", ["card reset", "GetEUICCChallenge"])
def test_an_interrupted_download_leaves_no_trace(sgp26_card: Euicc, interruption: str) -> None:
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST).start()
    payloads = session.bpp(UPP)
    middle = _profile_pieces(payloads)[3]
    assert session.load(payloads[:middle]) == (middle, b"")
    if interruption == "card reset":
        sgp26_card.reset()
    else:
        session.get_challenge()
    for piece in payloads[middle:]:
        with pytest.raises(StatusWordError) as err:
            session.send(piece)
        assert err.value.sw == 0x6A88
    before.assert_unchanged(sgp26_card)


def test_bpp_pieces_without_a_download_session(sgp26_card: Euicc) -> None:
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST).start()
    payloads = session.bpp(UPP)
    sgp26_card.reset()
    with pytest.raises(StatusWordError) as err:
        session.send(payloads[0])
    assert err.value.sw == 0x6985  # a well-formed BF36 with no session to load it into
    with pytest.raises(StatusWordError) as err:
        session.send(b"\xbf\x36\x03\x01\x02\x03")
    assert err.value.sw == 0x6A80
    for piece in payloads[1:4]:
        with pytest.raises(StatusWordError) as err:
            session.send(piece)
        assert err.value.sw == 0x6A88
    before.assert_unchanged(sgp26_card)


def test_bf36_after_authenticate_but_before_prepare_download_is_refused(
    sgp26_card: Euicc,
) -> None:
    first = Download(sgp26_card, NIST).start()
    payloads = first.bpp(UPP)
    session = Download(sgp26_card, NIST, transaction_id=first.transaction_id)
    session.get_challenge()
    session.authenticate()
    with pytest.raises(StatusWordError) as err:
        session.send(payloads[0])
    assert err.value.sw == 0x6985


def test_other_es10_commands_during_a_bpp_do_not_disturb_it(sgp26_card: Euicc) -> None:
    session = Download(sgp26_card, NIST).start()
    payloads = session.bpp(UPP)
    middle = _profile_pieces(payloads)[2]
    session.load(payloads[:middle])
    with session.client as client:
        client.get_profiles_info()
        with pytest.raises(StatusWordError):
            client.exchange(bytes.fromhex("BF7F00"))  # unknown tag: 6A88, BPP untouched
    _, answer = session.load(payloads[middle:])
    assert check_result(session, answer)["finalResult"][0] == "successResult"


# --- CancelSession --------------------------------------------------------------------------


def cancel(session: Download, transaction_id: bytes | None = None, reason: int = 0) -> bytes:
    request = schema.encode(
        "CancelSessionRequest",
        {"transactionId": transaction_id or session.transaction_id, "reason": reason},
    )
    return session.send(request)


def check_cancelled(session: Download, answer: bytes, reason: int) -> None:
    kind, value = schema.decode("SGP32-CancelSessionResponse", answer)
    assert kind == "cancelSessionResponseOk"
    signed = elements(elements(answer)[0])[0]
    assert signed == tlv.encode_tlv(
        b"\x30",
        tlv.encode_tlv(b"\x80", session.transaction_id)
        + bytes.fromhex("810388370A")  # smdpOid 2.999.10 of CERT.DPauth
        + tlv.encode_tlv(b"\x82", bytes([reason])),
    )
    assert session.euicc_certificate is not None
    key = session.euicc_certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    crypto.verify_raw(key, value["euiccCancelSessionSignature"], signed)


def test_cancel_session_with_the_wrong_transaction_id_keeps_the_session(
    sgp26_card: Euicc,
) -> None:
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST)
    session.get_challenge()
    session.authenticate()
    assert cancel(session, os.urandom(16)) == bytes.fromhex("BF4103810105")
    session.prepare()  # still there
    assert session.euicc_otpk
    before.assert_unchanged(sgp26_card)


def test_cancel_session_without_a_session_is_invalid_transaction_id(sgp26_card: Euicc) -> None:
    assert cancel(Download(sgp26_card, NIST)) == bytes.fromhex("BF4103810105")


@pytest.mark.parametrize(
    "stage", ["after AuthenticateServer", "after PrepareDownload", "after BF36"]
)
def test_cancel_session_signs_and_forgets_the_session(sgp26_card: Euicc, stage: str) -> None:
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST)
    session.get_challenge()
    session.authenticate()
    payloads: list[bytes] = []
    if stage != "after AuthenticateServer":
        session.prepare()
        payloads = session.bpp(UPP)
    if stage == "after BF36":
        assert session.load(payloads[:1]) == (1, b"")
    check_cancelled(session, cancel(session, reason=1), reason=1)
    if stage == "after AuthenticateServer":
        assert download_error(session.prepare(session.prepare_request()))[1] == 4
    else:
        with pytest.raises(StatusWordError) as err:
            session.send(payloads[0 if stage == "after PrepareDownload" else 1])
        assert err.value.sw == (0x6985 if stage == "after PrepareDownload" else 0x6A88)
        assert "download-otsk" not in sgp26_card.context.retained
    before.assert_unchanged(sgp26_card)


def test_cancel_session_after_configure_isdp_is_undefined_error(sgp26_card: Euicc) -> None:
    session = Download(sgp26_card, NIST).start()
    payloads = session.bpp(UPP)
    session.load(payloads[:2])
    assert cancel(session) == bytes.fromhex("BF410381017F")
    _, answer = session.load(payloads[2:])
    assert check_result(session, answer)["finalResult"][0] == "successResult"


# --- whatever breaks, nothing half-installed ------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_setup() -> tuple[Euicc, Download, list[bytes], ec.EllipticCurvePrivateKey]:
    card = with_history(new_card())
    otsk = crypto.generate_private_key(Curve.NIST_P256)
    template = Download(card, NIST, euicc_otpk=crypto.public_point(otsk.public_key()))
    return card, template, template.bpp(UPP), otsk


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_damaged_piece_installs_nothing_and_commits_at_most_one_result(
    fuzz_setup: tuple[Euicc, Download, list[bytes], ec.EllipticCurvePrivateKey],
    data: st.DataObject,
) -> None:
    card, template, payloads, otsk = fuzz_setup
    before = Snapshot.of(card)
    # The BPP is bound to a key the card is given to keep, so each attempt can reuse it.
    session = replace(template).start_reusing(otsk)
    index = data.draw(st.integers(0, len(payloads) - 1), label="piece")
    piece = bytearray(payloads[index])
    # Tags stay: a damaged tag is a routing matter (another ES10 function), not this one.
    first = 2 if index == 0 else 1
    position = data.draw(st.integers(first, len(piece) - 1), label="byte")
    piece[position] ^= data.draw(st.integers(1, 255), label="xor")
    damaged = [*payloads[:index], bytes(piece), *payloads[index + 1 :]]
    answers = []
    with session.client as client:
        for p in damaged:
            try:
                answers.append(client.exchange(p))
            except StatusWordError as exc:
                assert exc.sw in (0x6A80, 0x6A88, 0x6985)
    results = [a for a in answers if a]
    assert len(results) <= 1
    if results:
        kind, error = check_result(session, results[0])["finalResult"]
        assert kind == "errorResult"
        event(f"refused: bppCommandId {error['bppCommandId']}, errorReason {error['errorReason']}")
        before.assert_unchanged(card, new_notifications=1)
    else:
        event("no result")
        before.assert_unchanged(card)
    card.reset()  # end a BPP left waiting for its last piece


# --- crash safety of the commit -------------------------------------------------------------


def _summary(state: CardState) -> tuple[Any, ...]:
    """A state without the signatures, which differ from run to run."""
    notes = [(n.seq_number, n.event, n.address, n.iccid) for n in state.notifications]
    return state.profiles, notes, state.next_seq_number, state.next_isdp_index


@pytest.mark.parametrize("outcome", ["installed", "refused"])
def test_a_crash_at_any_effect_of_the_last_piece_leaves_the_card_before_or_after(
    tmp_path: Path, outcome: str
) -> None:
    """Power cut before each file-system effect of the last ``86``: the card powers up with
    the state before or the state after, never a profile without its package or result."""
    base = tmp_path / "base"
    with_history(Euicc.create(base, eid=EID, kind="consumer")).close()
    otsk = crypto.generate_private_key(Curve.NIST_P256)
    with Euicc.open(base) as card:
        template = Download(card, NIST, euicc_otpk=crypto.public_point(otsk.public_key()))
    payloads = template.bpp(UPP)
    if outcome == "refused":
        payloads[-1] = _flip(payloads[-1], -1)

    def up_to_the_last_piece(name: str) -> tuple[Euicc, Download, CrashingIO]:
        path = tmp_path / name
        shutil.copytree(base, path)
        io = CrashingIO()
        card = Euicc(DirectoryStorage(path, io=io))
        session = replace(template, card=card).start_reusing(otsk)
        assert session.load(payloads[:-1]) == (len(payloads) - 1, b"")
        return card, session, io

    card, session, io = up_to_the_last_piece("count")
    before, start = card.state, io.count
    session.send(payloads[-1])
    after, effects = card.state, io.log[start:]
    assert _summary(after) != _summary(before)
    assert len(after.profiles) == len(before.profiles) + (outcome == "installed")

    outcomes = []
    for k in range(len(effects)):
        card, session, io = up_to_the_last_piece(f"crash{k}")
        io.fail_at = io.count + k
        with pytest.raises(SimulatedCrash):
            session.send(payloads[-1])
        card.close()  # the power is off
        reopened = Euicc.open(tmp_path / f"crash{k}")
        summary = _summary(reopened.state)
        assert summary in (_summary(before), _summary(after)), effects[k]
        outcomes.append("after" if summary == _summary(after) else "before")
        digests = {p.package_digest for p in reopened.state.profiles}
        assert set(os.listdir(tmp_path / f"crash{k}" / "blobs")) == digests
    switch = outcomes.count("before")
    assert outcomes == ["before"] * switch + ["after"] * (len(effects) - switch)
    assert 1 <= switch < len(effects)  # one commit point, after at least one effect


# --- a CRL loaded by LoadCRL revokes server certificates (euicc_sim/crl.py rule 4) ---------------


def load_crl(card: Euicc, crl: bytes) -> list[int]:
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.load_crl(crl)


def test_a_revoked_dp_auth_is_refused_with_invalid_certificate(sgp26_card: Euicc) -> None:
    load_crl(sgp26_card, issue_crl(NIST.ci, [NIST.dp_pb.cert.serial_number + 1], 1))
    session = Download(sgp26_card, NIST)
    session.authenticate()  # other serials revoked: this DPauth still passes
    assert load_crl(sgp26_card, issue_crl(NIST.ci, [NIST.dp_auth.cert.serial_number], 2)) == []
    before = Snapshot.of(sgp26_card)
    session = Download(sgp26_card, NIST)
    session.get_challenge()
    assert auth_error(session.authenticate(session.authenticate_request())) == (
        session.transaction_id,
        1,
    )
    before.assert_unchanged(sgp26_card)


def test_a_revoked_dp_pb_is_refused_with_invalid_certificate(sgp26_card: Euicc) -> None:
    assert load_crl(sgp26_card, issue_crl(NIST.ci, [NIST.dp_pb.cert.serial_number], 7)) == []
    session = Download(sgp26_card, NIST)
    session.authenticate()
    answer = session.prepare(session.prepare_request())
    assert download_error(answer) == (session.transaction_id, 1)
