"""Keccak-f[1600] and TUAK known-answer tests (3GPP TS 35.233 §6, test sets 1 to 6)."""

from __future__ import annotations

import hashlib

import pytest

from euicc_sim.uicc.keccak import keccak_f1600
from euicc_sim.uicc.tuak import Tuak

h = bytes.fromhex

# (K, RAND, SQN, AMF, TOP, iterations, TOPc, f1, f1*, f2, f3, f4, f5, f5*)
# 3GPP TS 35.233 (TUAK design conformance test data) §6.3 .. §6.8, test sets 1 .. 6.
TEST_SETS = {
    1: ("abababababababababababababababab", "42424242424242424242424242424242", "111111111111",
        "ffff", "55" * 32, 1,
        "bd04d9530e87513c5d837ac2ad954623a8e2330c115305a73eb45d1f40cccbff",
        "f9a54e6aeaa8618d", "e94b4dc6c7297df3", "657acd64",
        "d71a1e5c6caffe986a26f783e5c78be1", "be849fa2564f869aecee6f62d4337e72",
        "719f1e9b9054", "e7af6b3d0e38"),
    2: ("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0",
        "0123456789abcdef0123456789abcdef", "0123456789ab", "abcd",
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", 1,
        "305425427e18c503c8a4b294ea72c95d0c36c6c6b29d0c65de5974d5977f8524",
        "c0b8c2d4148ec7aa5f1d78a97e4d1d58", "ef81af7290f7842c6ceafa537fa0745b",
        "e9d749dc4eea0035", "a4cb6f6529ab17f8337f27baa8234d47",
        "2274155ccf4199d5e2abcbf621907f90", "480a9345cc1e", "f84eb338848c"),
    3: ("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0",
        "0123456789abcdef0123456789abcdef", "0123456789ab", "abcd",
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", 1,
        "305425427e18c503c8a4b294ea72c95d0c36c6c6b29d0c65de5974d5977f8524",
        "d97b75a1776065271b1e212bc3b1bf173f438b21e6c64a55a96c372e085e5cc5",
        "427bbf07c6e3a86c54f8c5216499f3909a6fd4a164c9fe235b1550258111b821",
        "07021c73e7635c7d", "4d59ac796834eb85d11fa148a5058c3c",
        "126d47500136fdc5ddfd14f19ebf16749ce4b6435323fbb5715a3a796a6082bd",
        "1d6622c4e59a", "f84eb338848c"),
    4: ("b8da837a50652d6ac7c97da14f6acc61", "6887e55425a966bd86c9661a5fa72be8", "0dea2ee2c5af",
        "df1e", "0952be13556c32ebc58195d9dd930493e12a9003669988ffde5fa1f0fe35cc01", 1,
        "2bc16eb657a68e1f446f08f57c0efb1d493527a2e652ce281eb6ca0e4487760a",
        "749214087958dd8f58bfcdf869d8ae3f", "619e865afe80e382aee13063f9dfb56d",
        "4041ce438e3e38e8aa96562eed83ac43", "3e3bc01bea0cd914c4c2c83ce2d92757",
        "666a8e6f577b1aa77b7fd53cebb8a3d6", "1f880d005119", "45e617d77fe5"),
    5: ("1574ca56881d05c189c82880f789c9cd4244955f4426aa2b69c29f15770e5aa5",
        "c570aac68cde651fb1e3088322498bef", "c89bb71f3a41", "297d",
        "e59f6eb10ea406813f4991b0b9e02f181edf4c7e17b480f66d34da35ee88c95e", 1,
        "3c6052e41532a28a47aa3cbb89f223e8f3aaa976aecd48bc3e7d6165a55eff62",
        "d7340dad02b4cb01", "c6021e2e66accb15",
        "84d89b41db1867ffd4c7ba1d82163f4d526a20fbae5418fbb526940b1eeb905c",
        "d419676afe5ab58c1d8bee0d43523a4d2f52ef0b31a4676a0c334427a988fe65",
        "205533e505661b61d05cc0eac87818f4", "d7b3d2d4980a", "ca9655264986"),
    6: ("1574ca56881d05c189c82880f789c9cd4244955f4426aa2b69c29f15770e5aa5",
        "c570aac68cde651fb1e3088322498bef", "c89bb71f3a41", "297d",
        "e59f6eb10ea406813f4991b0b9e02f181edf4c7e17b480f66d34da35ee88c95e", 2,
        "b04a66f26c62fcd6c82de22a179ab65506ecf47f56245cd149966cfa9cec7a51",
        "90d2289ed1ca1c3dbc2247bb480d431ac71d2e4a7677f6e997cfddb0cbad88b7",
        "427355dbac30e825063aba61b556e87583abac638e3ab01c4c884ad9d458dc2f",
        "d67e6e64590d22eecba7324afa4af4460c93f01b24506d6e12047d789a94c867",
        "ede57edfc57cdffe1aae75066a1b7479bbc3837438e88d37a801cccc9f972b89",
        "48ed9299126e5057402fe01f9201cf25249f9c5c0ed2afcf084755daff1d3999",
        "6aae8d18c448", "8c5f33b61f4e"),
}  # fmt: skip


def test_keccak_f1600_of_the_zero_state() -> None:
    # Keccak reference KeccakF-1600-IntermediateValues: first lane after one permutation.
    assert keccak_f1600(bytes(200))[:8] == h("E7DDE140798F25F1")


def test_keccak_f1600_is_the_permutation_inside_sha3() -> None:
    for message in (b"", b"abc"):
        state = bytearray(200)
        state[: len(message)] = message
        state[len(message)] ^= 0x06  # SHA3 domain bits and pad10*1 (FIPS 202 §6.1)
        state[135] ^= 0x80
        assert keccak_f1600(bytes(state))[:32] == hashlib.sha3_256(message).digest()


@pytest.mark.parametrize("number", sorted(TEST_SETS))
def test_tuak_test_set(number: int) -> None:
    k, rand, sqn, amf, top, iterations, topc, f1, f1s, f2, f3, f4, f5, f5s = TEST_SETS[number]
    tuak = Tuak(
        h(k),
        top=h(top),
        keccak_iterations=iterations,
        mac_length=len(f1) // 2,
        res_length=len(f2) // 2,
        ck_length=len(f3) // 2,
        ik_length=len(f4) // 2,
    )
    assert tuak.topc == h(topc)
    assert tuak.f1_f1star(h(rand), h(sqn), h(amf)) == (h(f1), h(f1s))
    out = tuak.f2345(h(rand))
    assert (out.res, out.ck, out.ik, out.ak) == (h(f2), h(f3), h(f4), h(f5))
    assert tuak.f5star(h(rand)) == h(f5s)
    # The card holds TOPc: the same outputs from TOPc.
    same = Tuak(h(k), h(topc), keccak_iterations=iterations, res_length=len(f2) // 2,
                ck_length=len(f3) // 2, ik_length=len(f4) // 2)  # fmt: skip
    assert same.f2345(h(rand)).res == h(f2)


def test_wrong_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Tuak(bytes(24), bytes(32))
    with pytest.raises(ValueError):
        Tuak(bytes(16), bytes(32), res_length=5)
    with pytest.raises(ValueError):
        Tuak(bytes(16))
