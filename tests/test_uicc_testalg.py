"""The USIM test algorithm of 3GPP TS 34.108 §8.1.2 and the conversion functions c2/c3."""

from __future__ import annotations

from euicc_sim.uicc.aka import c2, c3
from euicc_sim.uicc.testalg import TestAlgorithm

h = bytes.fromhex

K = bytes(range(16))  # the TS.48 Ki
RAND = h("b5039c57e4a75051551d1a390a71ce48")
XDOUT = h("b5029e54e0a256565d141032067cc047")  # K XOR RAND


def test_outputs_follow_the_xor_definition() -> None:
    out = TestAlgorithm(K, res_length=16).f2345(RAND)
    assert out.res == XDOUT
    assert out.ck == h("029e54e0a256565d141032067cc047b5")  # XDOUT rotated by 8 bits
    assert out.ik == h("9e54e0a256565d141032067cc047b502")  # by 16 bits
    assert out.ak == h("54e0a256565d")  # XDOUT bits 24..71


def test_mac_is_xdout_xor_sqn_amf() -> None:
    mac_a, mac_s = TestAlgorithm(K).f1_f1star(RAND, h("000000000020"), h("8000"))
    assert mac_a == mac_s == h("b5029e54e082d656")  # b5029e54e0a25656 ^ 0..020 8000


def test_known_answer_with_published_2g_derivation() -> None:
    # An independent HLR's published vector for this K and RAND (SQN 0, RES of 16 bytes):
    # kc = 98e880384887f9fe, sres = 0ec81877.
    out = TestAlgorithm(K, res_length=16).f2345(RAND)
    assert c3(out.ck, out.ik) == h("98e880384887f9fe")
    assert c2(out.res) == h("0ec81877")


def test_res_length_is_configurable() -> None:
    assert TestAlgorithm(K, res_length=8).f2345(RAND).res == XDOUT[:8]


def test_c2_pads_short_res_with_zeros() -> None:
    assert c2(h("01020304")) == h("01020304")
    assert c2(h("0102030410203040")) == h("11223344")
