"""The strict DER decoder (euicc_protocol.der via schema.decode): one test per rule, the
values it gives, the spans it records, and its agreement with the TLV reader."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from euicc_protocol import der, saip, schema, tlv
from euicc_protocol.der import Rule


def refusal(type_name: str, hex_data: str) -> schema.StrictDecodeError:
    with pytest.raises(schema.StrictDecodeError) as caught:
        schema.decode(type_name, bytes.fromhex(hex_data))
    return caught.value


@pytest.mark.parametrize(
    ("type_name", "hex_data", "rule", "path"),
    [
        ("GetEuiccChallengeRequest", "BF2E00 00", Rule.TRAILING_BYTES, ()),
        ("GetEuiccChallengeRequest", "BF2E01", Rule.TRUNCATED, ()),
        ("GetEuiccChallengeRequest", "BF2E80 0000", Rule.INDEFINITE_LENGTH, ()),
        ("GetEuiccDataRequest", "BF3E8103 5C015A", Rule.LENGTH_FORM, ()),
        ("GetEuiccDataRequest", "BF3E03 5C025A 00", Rule.CHILD_PAST_PARENT, ()),
        ("GetEuiccDataRequest", "BF3E06 5C015A 5C015A", Rule.DUPLICATE_FIELD, ()),
        ("GetEuiccDataRequest", "BF3E00", Rule.MISSING_FIELD, ()),
        ("GetEuiccDataRequest", "BF3E04 5C025A5A", Rule.SIZE, ("tagList",)),
        ("GetEuiccChallengeRequest", "0400", Rule.WRONG_TAG, ()),
        ("EuiccMemoryResetRequest", "BF3403 820120", Rule.BIT_STRING_FORM, ("resetOptions",)),
        ("EuiccMemoryResetRequest", "BF3404 82020521", Rule.BIT_STRING_FORM, ("resetOptions",)),
        ("EuiccMemoryResetRequest", "BF3404 82020440", Rule.BIT_STRING_FORM, ("resetOptions",)),
        ("NotificationSentRequest", "BF3004 80020001", Rule.INTEGER_FORM, ("seqNumber",)),
        ("NotificationSentRequest", "BF3002 8000", Rule.INTEGER_FORM, ("seqNumber",)),
        ("AlgorithmIdentifier", "3003 060180", Rule.OID_FORM, ("algorithm",)),
        ("AlgorithmIdentifier", "3004 06028001", Rule.OID_FORM, ("algorithm",)),
        ("BasicConstraints", "3003 010101", Rule.BOOLEAN_FORM, ("cA",)),
        ("BasicConstraints", "3003 010100", Rule.DEFAULT_ENCODED, ("cA",)),
        ("BasicConstraints", "3005 020101 0500", Rule.UNKNOWN_FIELD, ()),
        ("BasicConstraints", "3003 0201FF", Rule.RANGE, ("pathLenConstraint",)),
    ],
)
def test_each_rule_is_named_with_its_path(
    type_name: str, hex_data: str, rule: Rule, path: tuple[str, ...]
) -> None:
    error = refusal(type_name, hex_data)
    assert (error.rule, error.path) == (rule, path)
    assert str(error).startswith(type_name)


def test_unknown_additions_after_the_known_fields_are_skipped() -> None:
    # GSMA modules are EXTENSIBILITY IMPLIED: X.680 skips unknown additions at the end ...
    assert schema.decode("GetEuiccDataRequest", bytes.fromhex("BF3E08 5C015A 9F7F020102")) == {
        "tagList": b"\x5a"
    }
    # ... but their TLV structure must still be DER
    assert refusal("GetEuiccDataRequest", "BF3E07 5C015A BF7F8101 00").rule is Rule.LENGTH_FORM


def test_a_known_field_after_an_unknown_addition_is_out_of_order() -> None:
    error = refusal("SGP32-EuiccMemoryResetRequest", "BF6408 9F7F00 82020780 9F7F00")
    assert error.rule in (Rule.FIELD_ORDER, Rule.MISSING_FIELD)


def test_an_unknown_alternative_of_an_extensible_choice_decodes_as_none() -> None:
    assert schema.decode("Psmo", bytes.fromhex("BF7F00")) == (None, None)


def test_defaults_are_filled_in_and_values_take_asn1tools_forms() -> None:
    metadata = schema.encode(
        "StoreMetadataRequest",
        {"iccid": bytes(10), "serviceProviderName": "", "profileName": ""},
    )
    decoded = schema.decode("StoreMetadataRequest", metadata)
    assert decoded["profileClass"] == 2  # DEFAULT operational, filled in as a number
    assert schema.decode("AlgorithmIdentifier", bytes.fromhex("300A06082A8648CE3D040302")) == {
        "algorithm": "1.2.840.10045.4.3.2"
    }
    assert schema.decode("AlgorithmIdentifier", bytes.fromhex("3005060388370A")) == {
        "algorithm": "2.999.10"  # the SGP.26 SM-DP+ OID asn1tools once read wrongly
    }


def test_spans_name_the_exact_bytes_of_every_component() -> None:
    data = bytes.fromhex("BF3E03 5C015A")
    value, spans = schema.decode_spans("GetEuiccDataRequest", data)
    assert value == {"tagList": b"\x5a"}
    assert spans == {(): (0, 6), ("tagList",): (3, 6)}


def test_set_of_elements_are_encoded_sorted_and_must_arrive_sorted() -> None:
    rdn = [{"type": "2.5.4.3", "value": b"\x0c\x01b"}, {"type": "2.5.4.3", "value": b"\x0c\x01a"}]
    encoded = schema.encode("RelativeDistinguishedName", rdn)
    assert schema.decode("RelativeDistinguishedName", encoded) == rdn[::-1]
    first = tlv.read_tlv(encoded, 2)
    swapped = encoded[:2] + encoded[first.end :] + encoded[2 : first.end]
    assert refusal("RelativeDistinguishedName", swapped.hex()).rule is Rule.SET_OF_ORDER


def test_a_tagged_open_type_is_explicit() -> None:
    value = [{"vendorOid": "1.2.3", "vendorSpecificData": bytes.fromhex("020101")}]
    encoded = schema.encode("VendorSpecificExtension", value)
    assert encoded.hex().upper() == "300B300980022A03A103020101"
    assert schema.decode("VendorSpecificExtension", encoded) == value


def test_constraints_can_be_left_to_the_function() -> None:
    data = bytes.fromhex("BF3E04 5C025A5A")
    assert schema.decode("GetEuiccDataRequest", data, constraints=False) == {"tagList": b"ZZ"}


@settings(max_examples=150)
@given(st.binary(max_size=24))
def test_the_tlv_reader_and_the_decoder_judge_framing_alike(data: bytes) -> None:
    """Whatever bytes: the TLV reader and the decoder's tree check accept the same ones."""
    try:
        list(tlv.iter_tlvs(data))
        by_tlv: str | None = None
    except tlv.TlvError as exc:
        by_tlv = exc.rule
    try:
        der.check_tree(data, 0, len(data))
        by_der: str | None = None
    except der.StrictDecodeError as exc:
        by_der = exc.rule.value
    if by_der is None:
        assert by_tlv is None
    elif by_tlv is not None:
        assert by_tlv == by_der


TS48_PES = [
    pe.raw
    for pe in saip.read_package(
        (Path(__file__).resolve().parent.parent / "profiles/ts48/TS48V1-A-UNIQUE.der").read_bytes()
    ).pes
]


@settings(max_examples=150)
@given(st.sampled_from(TS48_PES), st.data())
def test_what_the_decoder_accepts_is_well_framed(pe: bytes, data: st.DataObject) -> None:
    """The decoder's loops read most tags and lengths in place (a fast path beside
    tlv.read_header): whatever they accept, the TLV reader accepts too, and a framing refusal
    of the reader is a refusal of the decoder."""
    mutated = bytearray(pe)
    at = data.draw(st.integers(0, len(mutated) - 1))
    mutated[at] = data.draw(st.sampled_from([0x00, 0x1F, 0x7F, 0x80, 0x81, 0x82, 0xFF]))
    try:
        der.check_tree(bytes(mutated), 0, len(mutated))
        framed = True
    except der.StrictDecodeError:
        framed = False
    try:
        schema.decode("ProfileElement", bytes(mutated))
    except der.StrictDecodeError:
        return
    assert framed


def test_a_cached_object_identifier_does_not_let_a_malformed_one_through() -> None:
    good = bytes.fromhex("300A06082A8648CE3D040302")
    for _ in range(2):
        assert schema.decode("AlgorithmIdentifier", good) == {"algorithm": "1.2.840.10045.4.3.2"}
    # the same arcs with a non-minimal subidentifier (80 padding) stay refused
    assert refusal("AlgorithmIdentifier", "300B06092A8648CE3D04038002").rule is Rule.OID_FORM
    assert refusal("AlgorithmIdentifier", "300B0609802A8648CE3D040302").rule is Rule.OID_FORM


def test_the_decoder_benchmark_prints_its_figures() -> None:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "der.py"
    done = subprocess.run(
        [sys.executable, str(script), "--json", "--seconds", "0.05"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    figures = json.loads(done.stdout)
    assert set(figures) >= {"ts48_package_us", "ts48_mb_per_s", "read_package_us"}
    assert all(value > 0 for value in figures.values())


def test_a_cached_time_is_kept_apart_per_type_and_bad_times_stay_refused() -> None:
    utc = b"\x17\x0d" + b"490101000000Z"
    for _ in range(2):
        assert schema.decode("Time", utc) == ("utcTime", dt.datetime(2049, 1, 1))
    # the same content octets as a GeneralizedTime (four-digit year required) are refused
    assert refusal("Time", (b"\x18\x0d" + b"490101000000Z").hex()).rule is Rule.TIME_FORM
    assert refusal("Time", (b"\x17\x0d" + b"4901010000001").hex()).rule is Rule.TIME_FORM
