"""eIM configuration on the card: GetEimConfigurationData, AddInitialEim, association tokens,
counters and eUICCMemoryReset of the eIM and immediate-enable configuration (SGP.32 v1.2,
``euicc_sim/eim.py`` rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_euicc_package import (
    ICCID_B,
    Frozen,
    TestEim,
    add_initial_eim,
    eim_with_certificate,
    es10,
    new_card,
    results,
    send,
    spki,
)

from euicc_protocol import schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import generate_test_pki
from euicc_sim import eim as eim_module
from euicc_sim.card import Euicc
from euicc_sim.state import EimConfig
from ipa.errors import StatusWordError


@pytest.fixture
def card() -> Euicc:
    return new_card()


def configurations(card: Euicc, eim_id: str | None = None) -> list[dict[str, Any]]:
    request = {} if eim_id is None else {"searchCriteria": ("eimId", eim_id)}
    answer = es10(card, "GetEimConfigurationDataRequest", request)
    return list(answer["eimConfigurationDataList"])


def add_initial(card: Euicc, *entries: dict[str, Any]) -> Any:
    return es10(card, "AddInitialEimRequest", {"eimConfigurationDataList": list(entries)})


# --- GetEimConfigurationData ------------------------------------------------------------------


def test_a_new_card_has_no_eim_configuration(card: Euicc) -> None:
    assert send(card, bytes.fromhex("BF5500")) == bytes.fromhex("BF5502A000")


def test_configuration_comes_back_as_sent_with_the_allocated_token(card: Euicc) -> None:
    e = TestEim(counter=7)
    tls = generate_test_pki(Curve.NIST_P256).dp_tls.cert_der
    ci = card.credentials.chains[0].ci_pkid
    sent = e.configuration(
        trustedPublicKeyDataTls=("trustedCertificateTls", schema.decode("Certificate", tls)),
        eimSupportedProtocol=schema.bits([0, 2]),
        euiccCiPKId=ci,
        indirectProfileDownload=None,
    )
    assert add_initial(card, sent) == ("addInitialEimOk", [("associationToken", 1)])
    (got,) = configurations(card)
    assert got == {**sent, "associationToken": 1}
    stored = card.state.eim_config(e.eim_id)
    assert stored == EimConfig(
        eim_id=e.eim_id,
        counter_value=7,
        association_token=1,
        eim_fqdn="127.0.0.1:8000",
        eim_id_type=2,
        public_key=spki(e.key),
        tls_certificate=tls,
        supported_protocols=frozenset({0, 2}),
        euicc_ci_pkid=ci,
        indirect_profile_download=True,
    )
    # The card's encoding is DER: the same bytes the schema encoder writes.
    answer = send(card, bytes.fromhex("BF5500"))
    value = schema.decode("GetEimConfigurationDataResponse", answer)
    assert schema.encode("GetEimConfigurationDataResponse", value) == answer


def test_an_eim_certificate_is_kept_byte_for_byte(card: Euicc) -> None:
    e = eim_with_certificate()
    add_initial_eim(card, e)
    config = card.state.eim_config(e.eim_id)
    assert e.certificate is not None and config is not None
    assert config.certificate == e.certificate
    (got,) = configurations(card)
    assert got["eimPublicKeyData"] == (
        "eimCertificate",
        schema.decode("Certificate", e.certificate),
    )


def test_search_by_eim_id(card: Euicc) -> None:
    first, second = TestEim(eim_id="first"), TestEim(eim_id="second")
    add_initial_eim(card, first, second)
    assert [c["eimId"] for c in configurations(card)] == ["first", "second"]
    assert [c["eimId"] for c in configurations(card, "second")] == ["second"]
    assert configurations(card, "third") == []


def test_the_counter_shown_is_the_last_accepted_one(card: Euicc) -> None:
    e = TestEim(counter=3)
    add_initial_eim(card, e)
    results(card, send(card, e.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=10)), e)
    assert configurations(card)[0]["counterValue"] == 10


# --- AddInitialEim ------------------------------------------------------------------------------


def test_token_minus_one_gets_a_token_and_no_token_gets_add_ok(card: Euicc) -> None:
    a, b, c = TestEim(eim_id="a"), TestEim(eim_id="b"), TestEim(eim_id="c")
    answer = send(
        card,
        schema.encode(
            "AddInitialEimRequest",
            {
                "eimConfigurationDataList": [
                    a.configuration(token=-1),
                    b.configuration(token=None),
                    c.configuration(token=-1),
                ]
            },
        ),
    )
    # BF57 { A0 { 84 01 01, 05 00, 84 01 02 } }
    assert answer == bytes.fromhex("BF57 0A A0 08 840101 0500 840102")
    tokens = [card.state.eim_config(x).association_token for x in "abc"]  # type: ignore[union-attr]
    assert tokens == [1, None, 2]


def test_a_token_chosen_by_the_eim_is_stored_and_answered_add_ok(card: Euicc) -> None:
    e = TestEim()
    assert add_initial(card, e.configuration(token=42)) == ("addInitialEimOk", [("addOk", None)])
    assert card.state.eim_config(e.eim_id).association_token == 42  # type: ignore[union-attr]


def test_onomondo_sample_configuration_is_accepted(card: Euicc) -> None:
    """An SGP.32 ES10b.AddInitialEim request (with our own key)."""
    key = TestEim().key
    point = spki(key)[-65:]
    body = bytes.fromhex(
        "80 03 65494D 81 0E 3132372E302E302E313A38303030 83 01 01 84 01 FF"
    ) + tlv.encode_tlv(
        b"\xa5",
        tlv.encode_tlv(
            b"\xa0",
            bytes.fromhex("301306072A8648CE3D020106082A8648CE3D030107")
            + tlv.encode_tlv(b"\x03", b"\x00" + point),
        ),
    )
    request = tlv.encode_tlv(b"\xbf\x57", tlv.encode_tlv(b"\xa0", tlv.encode_tlv(b"\x30", body)))
    assert send(card, request) == bytes.fromhex("BF5705A003840101")
    config = card.state.eim_config("eIM")
    assert config is not None and config.public_key == spki(key)
    assert (config.eim_fqdn, config.counter_value) == ("127.0.0.1:8000", 1)


def _refused(tmp_path: Path, entries: list[dict[str, Any]], *, setup: Any = None) -> Any:
    card = new_card(tmp_path / "card")
    if setup is not None:
        setup(card)
    frozen = Frozen.of(card, tmp_path / "card")
    before = frozen.card.state
    answer = es10(frozen.card, "AddInitialEimRequest", {"eimConfigurationDataList": entries})
    frozen.assert_unchanged(before)
    return answer


def _other_ci_certificate() -> bytes:
    """A certificate issued by a CI this card does not know."""
    return generate_test_pki(Curve.NIST_P256).dp_auth.cert_der


_CASES: dict[str, tuple[list[dict[str, Any]], int]] = {
    "no-public-key-data": ([{"eimId": "x", "associationToken": -1}], 7),
    "unknown-eim-id-type": ([TestEim().configuration(eimIdType=9)], 7),
    "key-not-ec": (
        [
            TestEim().configuration(
                eimPublicKeyData=(
                    "eimPublicKey",
                    {
                        "algorithm": {
                            "algorithm": "1.2.840.113549.1.1.1",
                            "parameters": b"\x05\x00",
                        },
                        "subjectPublicKey": (b"\x30\x00", 16),
                    },
                )
            )
        ],
        7,
    ),
    "certificate-of-unknown-ci": (
        [
            TestEim().configuration(
                eimPublicKeyData=(
                    "eimCertificate",
                    schema.decode("Certificate", _other_ci_certificate()),
                )
            )
        ],
        3,
    ),
    "unknown-euicc-ci-pk-id": ([TestEim().configuration(euiccCiPKId=bytes(20))], 3),
    "negative-counter": ([TestEim().configuration(counterValue=-1)], 6),
    "counter-above-maximum": ([TestEim().configuration(counterValue=2**31)], 6),
    "token-zero": ([TestEim().configuration(token=0)], 5),
    "token-minus-two": ([TestEim().configuration(token=-2)], 5),
    "token-above-maximum": ([TestEim().configuration(token=2**31)], 5),
    "one-eim-id-twice": ([TestEim().configuration(), TestEim().configuration()], 7),
    "empty-list": ([], 7),
    "too-many-eims": (
        [TestEim(eim_id=f"eim{i}").configuration() for i in range(eim_module.MAX_EIMS + 1)],
        1,
    ),
    "a-bad-entry-after-a-good-one": (
        [TestEim(eim_id="good").configuration(), TestEim().configuration(token=0)],
        5,
    ),
}


def test_an_empty_eim_id_breaks_its_size_constraint_and_is_6a80(tmp_path: Path) -> None:
    """eimId is UTF8String (SIZE(1..128)): the strict decoder refuses the request."""
    with pytest.raises(StatusWordError) as caught:
        _refused(tmp_path, [TestEim(eim_id="").configuration()])
    assert caught.value.sw == 0x6A80


@pytest.mark.parametrize("case", sorted(_CASES))
def test_refused_add_initial_eim_changes_nothing(tmp_path: Path, case: str) -> None:
    entries, code = _CASES[case]
    assert _refused(tmp_path, entries) == ("addInitialEimError", code)


def test_add_initial_eim_once_an_eim_is_associated_is_refused(tmp_path: Path) -> None:
    answer = _refused(
        tmp_path,
        [TestEim(eim_id="late").configuration()],
        setup=lambda card: add_initial_eim(card, TestEim()),
    )
    assert answer == ("addInitialEimError", 2)


def test_max_eims_fit(card: Euicc) -> None:
    eims = [TestEim(eim_id=f"eim{i}") for i in range(eim_module.MAX_EIMS)]
    kind, answers = add_initial_eim(card, *eims)
    assert kind == "addInitialEimOk"
    assert [t for _, t in answers] == list(range(1, eim_module.MAX_EIMS + 1))
    add = [("addEim", TestEim(eim_id="one-more").configuration())]
    answer = send(card, eims[0].package(bytes.fromhex(card.eid), add, kind="ecoList"))
    assert results(card, answer, eims[0]) == [("addEimResult", ("addEimResultCode", 1))]


def test_tokens_are_never_reused_across_associations(card: Euicc) -> None:
    e = TestEim()
    add_initial_eim(card, e)
    assert e.token == 1
    reset = es10(card, "SGP32-EuiccMemoryResetRequest", {"resetOptions": schema.bits([5])})
    assert reset == {"resetResult": 1, "resetEimResult": 0}
    add_initial_eim(card, e)
    assert e.token == 2


def test_undecodable_add_initial_eim_is_6a80(card: Euicc) -> None:
    for request in ("BF5700", "BF5703A00130", "BF5702A100"):
        with pytest.raises(StatusWordError) as excinfo:
            send(card, bytes.fromhex(request))
        assert excinfo.value.sw == 0x6A80, request
    assert card.state.eim_configs == ()


# --- eUICCMemoryReset options 5 and 6 -----------------------------------------------------------


def test_memory_reset_of_the_eim_configuration(card: Euicc) -> None:
    e = TestEim()
    add_initial_eim(card, e)
    request = {"resetOptions": schema.bits([5])}
    assert es10(card, "SGP32-EuiccMemoryResetRequest", request) == {
        "resetResult": 1,  # no profile was deleted
        "resetEimResult": 0,
    }
    assert card.state.eim_configs == ()
    assert len(card.state.profiles) == 3
    assert es10(card, "SGP32-EuiccMemoryResetRequest", request) == {
        "resetResult": 1,
        "resetEimResult": 1,  # nothingToDelete
    }
    package = e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})])
    assert schema.decode("EuiccPackageResult", send(card, package))[0] == (
        "euiccPackageErrorUnsigned"
    )


def test_memory_reset_keeps_pending_package_results(card: Euicc) -> None:
    e = TestEim()
    add_initial_eim(card, e)
    answer = send(card, e.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    es10(card, "SGP32-EuiccMemoryResetRequest", {"resetOptions": schema.bits([0, 1, 3, 5, 6])})
    assert [r.encoded for r in card.state.package_results] == [answer]


def test_memory_reset_of_the_immediate_enable_configuration(card: Euicc) -> None:
    configure = {"immediateEnableFlag": None, "defaultSmdpAddress": "smdp.example"}
    assert es10(card, "ConfigureImmediateProfileEnablingRequest", configure) == {
        "configImmediateEnableResult": 0
    }
    assert card.state.immediate_enable is not None
    request = {"resetOptions": schema.bits([6])}
    expected = {"resetResult": 1, "resetImmediateEnableConfigResult": 0}
    assert es10(card, "SGP32-EuiccMemoryResetRequest", request) == expected
    assert card.state.immediate_enable is None
    assert es10(card, "SGP32-EuiccMemoryResetRequest", request) == expected  # nothing: ok too


# --- token TLV forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "forms"),
    [
        (None, [""]),
        (1, ["840101"]),
        (127, ["84017F"]),
        (128, ["84020080", "840180"]),
        (255, ["840200FF", "8401FF"]),
        (256, ["84020100"]),
        (2**31 - 1, ["84047FFFFFFF"]),
    ],
)
def test_token_tlv_forms(token: int | None, forms: list[str]) -> None:
    assert [f.hex().upper() for f in eim_module.token_tlvs(token)] == forms
