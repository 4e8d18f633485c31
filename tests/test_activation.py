"""ipa.activation: activation code parsing and formatting (GSMA SGP.22 v2.5 §4.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipa.activation import ActivationCode, InvalidActivationCode, parse_activation_code

MATCHING_ID = "04386-AGYFT-A74Y8-3F815"


# -- valid forms ------------------------------------------------------------------------------


def test_example_without_optional_fields() -> None:
    ac = parse_activation_code(f"1$SMDP.EXAMPLE.COM${MATCHING_ID}")
    assert ac == ActivationCode("SMDP.EXAMPLE.COM", MATCHING_ID)
    assert ac.smdp_oid is None
    assert ac.confirmation_code_required is False


def test_example_with_oid_and_confirmation_code_flag() -> None:
    ac = parse_activation_code(f"1$SMDP.EXAMPLE.COM${MATCHING_ID}$1.3.6.1.4.1.31746$1")
    assert ac == ActivationCode("SMDP.EXAMPLE.COM", MATCHING_ID, "1.3.6.1.4.1.31746", True)


@pytest.mark.parametrize("prefix", ["LPA:", "lpa:", "Lpa:", ""])
def test_lpa_scheme_prefix_is_optional_and_case_insensitive(prefix: str) -> None:
    ac = parse_activation_code(f"{prefix}1$smdp.example.com${MATCHING_ID}")
    assert ac.smdp_address == "smdp.example.com"
    assert ac.matching_id == MATCHING_ID


def test_empty_matching_id_is_allowed() -> None:
    assert parse_activation_code("LPA:1$smdp.example.com$").matching_id == ""


def test_empty_matching_id_with_oid() -> None:
    ac = parse_activation_code("1$addr.example$$2.999.10")
    assert ac == ActivationCode("addr.example", "", "2.999.10")


def test_confirmation_code_flag_without_oid() -> None:
    ac = parse_activation_code("LPA:1$smdp.example.com$ABC$$1")
    assert ac.smdp_oid is None
    assert ac.confirmation_code_required is True


@pytest.mark.parametrize("flag", ["", "0"])
def test_confirmation_code_flag_empty_or_zero_means_not_required(flag: str) -> None:
    ac = parse_activation_code(f"1$smdp.example.com$ABC$2.999.10${flag}")
    assert ac.confirmation_code_required is False


@pytest.mark.parametrize(
    "address",
    ["smdp.example.com:8443", "127.0.0.1", "127.0.0.1:40123", "localhost", "[::1]:8443", "[::1]"],
)
def test_addresses_with_port_ip_and_ipv6(address: str) -> None:
    assert parse_activation_code(f"1${address}$X").smdp_address == address


def test_surrounding_white_space_is_ignored() -> None:
    ac = parse_activation_code(f"  LPA:1$smdp.example.com${MATCHING_ID}\r\n")
    assert ac.matching_id == MATCHING_ID


# -- formatting -------------------------------------------------------------------------------


def test_format_is_canonical() -> None:
    assert str(ActivationCode("a.example", "M")) == "LPA:1$a.example$M"
    assert ActivationCode("a.example", "M").format(scheme=False) == "1$a.example$M"
    assert str(ActivationCode("a.example", "M", "2.999.10")) == "LPA:1$a.example$M$2.999.10"
    assert str(ActivationCode("a.example", "M", None, True)) == "LPA:1$a.example$M$$1"
    assert str(ActivationCode("a.example", "", "2.999.10", True)) == "LPA:1$a.example$$2.999.10$1"


def test_parse_classmethod() -> None:
    assert ActivationCode.parse("1$a.example$M") == ActivationCode("a.example", "M")


# -- invalid forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("LPA:", "empty"),
        ("   ", "empty"),
        ("2$smdp.example.com$M", "unsupported activation code format '2'"),
        ("LPA:$smdp.example.com$M", "unsupported activation code format ''"),
        ("1$smdp.example.com", "lacks the matchingId field"),
        ("1", "lacks the SM-DP+ address and matchingId field"),
        ("1$$M", "SM-DP+ address (field 2) is empty"),
        ("1$https://smdp.example.com$M", "not a URL"),
        ("1$smdp.example.com/path$M", "not a URL"),
        ("1$smdp example.com$M", "not a valid host name"),
        ("1$-smdp.example.com$M", "not a valid host name"),
        ("1$smdp.example.com:0$M", "invalid port"),
        ("1$smdp.example.com:65536$M", "invalid port"),
        ("1$smdp.example.com:http$M", "invalid port"),
        ("1$smdp.example.com:$M", "invalid port"),
        ("1$fe80::1$M", "more than one ':'"),
        ("1$[::1$M", "not a valid host"),
        ("1$[zz]:1$M", "not a valid host"),
        ("1$smdp.example.com$A B", "white space or control characters"),
        ("1$smdp.example.com$A\tB", "white space or control characters"),
        ("1$smdp.example.com$M$not-an-oid", "not a dotted object identifier"),
        ("1$smdp.example.com$M$3.1.2", "not a dotted object identifier"),
        ("1$smdp.example.com$M$2", "not a dotted object identifier"),
        ("1$smdp.example.com$M$1.40.1", "second arc above 39"),
        ("1$smdp.example.com$M$2.999.10$2", "flag (field 5) must be '1', '0' or empty"),
        ("1$smdp.example.com$M$2.999.10$yes", "flag (field 5) must be '1', '0' or empty"),
        ("1$smdp.example.com$M$2.999.10$1$extra", "6 fields; at most 5"),
    ],
)
def test_invalid_activation_codes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidActivationCode) as info:
        parse_activation_code(text)
    assert message in str(info.value)


def test_invalid_activation_code_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_activation_code("nonsense")


def test_non_text_is_rejected() -> None:
    with pytest.raises(InvalidActivationCode, match="is text"):
        parse_activation_code(b"1$a$b")  # type: ignore[arg-type]


def test_dataclass_refuses_fields_that_would_not_parse() -> None:
    with pytest.raises(InvalidActivationCode, match="'\\$'"):
        ActivationCode("a.example", "M$N")
    with pytest.raises(InvalidActivationCode, match="empty"):
        ActivationCode("", "M")
    with pytest.raises(InvalidActivationCode, match="object identifier"):
        ActivationCode("a.example", "M", "x.y")


# -- round trip ---------------------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_HOSTS = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_ADDRESSES = st.tuples(_HOSTS, st.none() | st.integers(1, 65535)).map(
    lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}"
)
_MATCHING_IDS = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="$"),
    max_size=40,
)
_OIDS = st.tuples(
    st.integers(0, 2), st.integers(0, 39), st.lists(st.integers(0, 10**6), max_size=6)
).map(lambda t: ".".join(str(x) for x in (t[0], t[1], *t[2])))
_CODES = st.builds(
    ActivationCode,
    smdp_address=_ADDRESSES,
    matching_id=_MATCHING_IDS,
    smdp_oid=st.none() | _OIDS,
    confirmation_code_required=st.booleans(),
)


@given(_CODES, st.booleans())
def test_format_then_parse_round_trips(ac: ActivationCode, scheme: bool) -> None:
    text = ac.format(scheme=scheme)
    assert parse_activation_code(text) == ac
    assert parse_activation_code(text).format(scheme=scheme) == text
