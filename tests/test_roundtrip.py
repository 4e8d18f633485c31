"""DER round trips of every ES10 message and of the protocol objects inside them.

For each type, values come from the generic schema-driven strategy (tests/strategies.py):
``encode -> decode`` must give back the same value and re-encode to the same bytes, and the
bytes must be exactly one TLV with the type's tag. A type the strategy cannot generate fails
here instead of being skipped.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import UnsupportedType, _primitive, strategy_for

from euicc_protocol import schema, tlv
from euicc_protocol.es10 import FUNCTIONS

#: Request and response types of every ES10 function, both card profiles.
ES10_TYPES = sorted({t for fn in FUNCTIONS for t in (fn.request_type, fn.response_type)})

#: Objects the card builds, stores or signs, and what it receives inside them.
NESTED_TYPES = [
    # SGP.22
    "ProfileInfo",
    "NotificationMetadata",
    "PendingNotification",
    "OtherSignedNotification",
    "ProfileInstallationResult",
    "ProfileInstallationResultData",
    "EUICCInfo1",
    "EUICCInfo2",
    "EuiccSigned1",
    "EUICCSigned2",
    "EuiccCancelSessionSigned",
    "ServerSigned1",
    "SmdpSigned2",
    "CtxParams1",
    "DeviceInfo",
    "StoreMetadataRequest",
    "InitialiseSecureChannelRequest",
    "ConfigureISDPRequest",
    "ReplaceSessionKeysRequest",
    "UpdateMetadataRequest",
    "ErrorResult",
    "RulesAuthorisationTable",
    "VendorSpecificExtension",
    "ISDRProprietaryApplicationTemplate",
    "Certificate",
    "CertificateList",
    # SGP.32
    "SGP32-ProfileInfo",
    "SGP32-PendingNotification",
    "SGP32-ProfileInstallationResult",
    "SGP32-EUICCInfo2",
    "SGP32-EuiccSigned1",
    "SGP32-StoreMetadataRequest",
    "CompactProfileInstallationResult",
    "CompactOtherSignedNotification",
    "EimConfigurationData",
    "EuiccPackageSigned",
    "EuiccPackageResultDataSigned",
    "EuiccPackageErrorDataSigned",
    "EuiccResultData",
    "Psmo",
    "Eco",
    "IpaEuiccDataRequest",
    "IpaEuiccData",
    "IpaEuiccDataResponse",
    "IpaCapabilities",
    "ProfileDownloadTriggerRequest",
    "ProfileDownloadTriggerResult",
    "EimAcknowledgements",
    "ISDRProprietaryApplicationTemplateIoT",
    "EsipaMessageFromIpaToEim",
    "EsipaMessageFromEimToIpa",
]

ALL_TYPES = ES10_TYPES + [t for t in NESTED_TYPES if t not in ES10_TYPES]

ROUND_TRIP = settings(
    max_examples=25,
    deadline=None,
    # Certificates nested in notifications make large examples on purpose.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_type_lists_name_real_schema_types() -> None:
    assert [t for t in ALL_TYPES if not schema.has_type(t)] == []


@pytest.mark.parametrize("type_name", ALL_TYPES)
@ROUND_TRIP
@given(data=st.data())
def test_der_round_trip(type_name: str, data: st.DataObject) -> None:
    value: Any = data.draw(strategy_for(type_name), label=type_name)
    encoded = schema.encode(type_name, value)

    decoded = schema.decode(type_name, encoded)
    assert schema.encode(type_name, decoded) == encoded
    assert decoded == value

    outer = tlv.read_tlv(encoded)
    assert outer.end == len(encoded)
    try:
        expected_tag = schema.tag_of(type_name)
    except schema.Asn1Error:
        return  # untagged CHOICE: the alternative's tag is outermost
    assert outer.tag == expected_tag


def test_unknown_asn1tools_types_fail_loudly() -> None:
    class Mystery:
        name = "mystery"

    with pytest.raises(UnsupportedType):
        _primitive(Mystery(), None, "Test")
