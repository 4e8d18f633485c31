"""ES10a conformance: the eUICC's configured addresses (SGP.22 §5.7.3, §5.7.4)."""

from __future__ import annotations

import pytest

from ipa.es10 import Es10Client

DP_ADDRESS = "smdp.conformance.example.com"
OTHER_DP_ADDRESS = "smdp2.conformance.example.org"


def test_configured_addresses_include_a_root_smds(es10: Es10Client) -> None:
    addresses = es10.get_euicc_configured_addresses()
    assert isinstance(addresses.root_ds_address, str)
    assert addresses.root_ds_address.strip()


@pytest.mark.modifies_card
def test_set_default_dp_address_is_reported(es10: Es10Client) -> None:
    root = es10.get_euicc_configured_addresses().root_ds_address
    es10.set_default_dp_address(DP_ADDRESS)
    addresses = es10.get_euicc_configured_addresses()
    assert addresses.default_dp_address == DP_ADDRESS
    assert addresses.root_ds_address == root


@pytest.mark.modifies_card
def test_set_default_dp_address_replaces_the_previous_one(es10: Es10Client) -> None:
    es10.set_default_dp_address(DP_ADDRESS)
    es10.set_default_dp_address(OTHER_DP_ADDRESS)
    assert es10.get_euicc_configured_addresses().default_dp_address == OTHER_DP_ADDRESS


@pytest.mark.modifies_card
def test_empty_default_dp_address_clears_it(es10: Es10Client) -> None:
    root = es10.get_euicc_configured_addresses().root_ds_address
    es10.set_default_dp_address(DP_ADDRESS)
    es10.set_default_dp_address("")
    addresses = es10.get_euicc_configured_addresses()
    assert addresses.default_dp_address is None
    assert addresses.root_ds_address == root


@pytest.mark.modifies_card
def test_clearing_an_absent_default_dp_address_is_ok(es10: Es10Client) -> None:
    es10.set_default_dp_address("")
    es10.set_default_dp_address("")
    assert es10.get_euicc_configured_addresses().default_dp_address is None


@pytest.mark.modifies_card
@pytest.mark.persistence
def test_default_dp_address_survives_reopen_and_power_cycle(card, es10: Es10Client) -> None:
    es10.set_default_dp_address(DP_ADDRESS)
    before = es10.get_euicc_configured_addresses()
    es10 = card.reopen()
    assert es10.get_euicc_configured_addresses() == before
    es10 = card.power_cycle()
    assert es10.get_euicc_configured_addresses() == before


@pytest.mark.modifies_card
@pytest.mark.persistence
def test_cleared_default_dp_address_stays_cleared_after_reopen(card, es10: Es10Client) -> None:
    es10.set_default_dp_address(DP_ADDRESS)
    es10.set_default_dp_address("")
    es10 = card.reopen()
    assert es10.get_euicc_configured_addresses().default_dp_address is None
