"""Access rules in the expanded format (ETSI TS 102 221 §9.2.4): euicc_sim.uicc.access."""

from __future__ import annotations

from euicc_sim.uicc.access import READ, UPDATE, allowed

h = bytes.fromhex

# Rules as the TS.48 EF.ARR records hold them.
READ_ALWAYS_UPDATE_ADM = h("800101 9000 800102 A406830101950108 80015A A40683010A950108")
READ_PIN1_UPDATE_PIN2 = h("800101 A406830101950108 800102 A406830181950108")
ADM_ONLY = h("80015E A40683010A950108 8401D4 A40683010A950108 FFFF")


def keys(*verified: int):  # noqa: ANN201 - a small predicate factory
    return lambda ref: ref in verified


def test_always_and_pin_conditions() -> None:
    assert allowed(READ_ALWAYS_UPDATE_ADM, READ, keys())
    assert allowed(READ_PIN1_UPDATE_PIN2, READ, keys(0x01))
    assert not allowed(READ_PIN1_UPDATE_PIN2, READ, keys(0x81))
    assert allowed(READ_PIN1_UPDATE_PIN2, UPDATE, keys(0x81))


def test_the_first_access_mode_covering_the_operation_decides() -> None:
    # READ is covered by the first AM (PIN1): ADM verified does not help.
    rule = h("800101 A406830101950108 800103 9000")
    assert not allowed(rule, READ, keys(0x0A))
    assert allowed(rule, UPDATE, keys())


def test_uncovered_operation_and_never_are_refused() -> None:
    assert not allowed(ADM_ONLY, READ, keys(0x0A))  # 5E has no READ bit
    assert allowed(ADM_ONLY, UPDATE, keys(0x0A))
    assert not allowed(h("800101 9700"), READ, keys())
    assert not allowed(b"", READ, keys())


def test_or_and_templates() -> None:
    either = h("800101 A010 A406830101950108 A40683010A950108")
    both = h("800101 AF10 A406830101950108 A40683010A950108")
    assert allowed(either, READ, keys(0x0A)) and allowed(either, READ, keys(0x01))
    assert not allowed(both, READ, keys(0x01)) and allowed(both, READ, keys(0x01, 0x0A))


def test_malformed_rules_count_as_never() -> None:
    assert not allowed(h("8001"), READ, keys())
    assert not allowed(h("800101 A4FF"), READ, keys(0x01))
