"""Tests of euicc_protocol.scp03t: X9.63 KDF, session keys and SCP03t segment protection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from hypothesis import given
from hypothesis import strategies as st

from euicc_protocol import crypto
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import eid_to_bytes
from euicc_protocol.scp03t import (
    Scp03tError,
    Scp03tSecurityError,
    Scp03tStructureError,
    SecureChannel,
    SessionKeys,
    derive_session_keys,
    kdf_shared_info,
    x963_kdf,
)

DATA = Path(__file__).with_name("data")
BSP = json.loads((DATA / "bsp_vectors.json").read_text())
BPP = json.loads((DATA / "bpp_conformant_nist.json").read_text())

KEY_ENC = bytes(range(16))
KEY_MAC = bytes(range(16, 32))
MCV0 = bytes(range(32, 48))


def _pair() -> tuple[SecureChannel, SecureChannel]:
    return SecureChannel(KEY_ENC, KEY_MAC, MCV0), SecureChannel(KEY_ENC, KEY_MAC, MCV0)


def _value(tlv: bytes) -> bytes:
    """Strip tag and BER length off a TLV whose tag is one byte or BFxx."""
    pos = 2 if tlv[0] & 0x1F == 0x1F else 1
    first = tlv[pos]
    if first < 0x80:
        return tlv[pos + 1 :]
    return tlv[pos + 1 + (first & 0x7F) :]


def _spec_segment(tag: int, body: bytes, counter: int, mcv: bytes, *, encrypt: bool) -> bytes:
    """Build an SCP03t segment (SGP.22 v2.5 §2.5, Annex G) without padding, for malformed input."""
    if encrypt:
        ecb = Cipher(algorithms.AES(KEY_ENC), modes.ECB()).encryptor()
        icv = ecb.update(counter.to_bytes(16, "big")) + ecb.finalize()
        cbc = Cipher(algorithms.AES(KEY_ENC), modes.CBC(icv)).encryptor()
        body = cbc.update(body) + cbc.finalize()
    header = bytes([tag, len(body) + 8])
    mac = cmac.CMAC(algorithms.AES(KEY_MAC))
    mac.update(mcv + header + body)
    return header + body + mac.finalize()[:8]


# ------------------------------------------------------------------ KDF


@given(z=st.binary(max_size=64), info=st.binary(max_size=64), length=st.integers(1, 200))
def test_x963_kdf_matches_independent_implementation(z: bytes, info: bytes, length: int) -> None:
    reference = X963KDF(algorithm=hashes.SHA256(), length=length, sharedinfo=info).derive(z)
    assert x963_kdf(z, info, length) == reference


def test_x963_kdf_first_block_is_sha256_with_counter_one() -> None:
    assert x963_kdf(b"Z", b"I", 32) == hashlib.sha256(b"Z\x00\x00\x00\x01I").digest()


def test_shared_info_of_conformant_bpp_vector() -> None:
    info = kdf_shared_info(0x88, 0x10, bytes.fromhex(BPP["host_id"]), eid_to_bytes(BPP["eid"]))
    assert info.hex() == BPP["kdf_shared_info"]


@pytest.mark.parametrize("vector", BSP["kdf"], ids=lambda v: v["eid"])
def test_kdf_vectors(vector: dict[str, Any]) -> None:
    keys = derive_session_keys(
        bytes.fromhex(vector["shared_secret"]),
        int(vector["key_type"], 16),
        int(vector["key_length"], 16),
        host_id=bytes.fromhex(vector["host_id"]),
        eid=eid_to_bytes(vector["eid"]),
    )
    assert keys.initial_mcv.hex() == vector["expect"]["initial_mcv"]
    assert keys.s_enc.hex() == vector["expect"]["s_enc"]
    assert keys.s_mac.hex() == vector["expect"]["s_mac"]


@pytest.mark.parametrize(("key_type", "key_length"), [(0x89, 0x10), (0x88, 0x20), (0x88, 0x08)])
def test_unsupported_crt_values_are_refused(key_type: int, key_length: int) -> None:
    with pytest.raises(ValueError, match="unsupported CRT"):
        derive_session_keys(b"\x01" * 32, key_type, key_length, host_id=b"", eid=b"\x00" * 16)


def test_session_keys_repr_hides_keys() -> None:
    vector = BSP["kdf"][0]
    keys = derive_session_keys(
        bytes.fromhex(vector["shared_secret"]),
        host_id=bytes.fromhex(vector["host_id"]),
        eid=eid_to_bytes(vector["eid"]),
    )
    for secret in (keys.s_enc, keys.s_mac, keys.initial_mcv):
        assert secret.hex() not in repr(keys)
        assert repr(secret) not in repr(keys)


# ------------------------------------------------------------------ known answers


@pytest.mark.parametrize("chain", ["segment_chain_1", "segment_chain_2"])
def test_segment_chain_vectors(chain: str) -> None:
    vector = BSP[chain]
    keys = [bytes.fromhex(vector[k]) for k in ("s_enc", "s_mac", "initial_mcv")]
    sender, receiver = SecureChannel(*keys), SecureChannel(*keys)
    for step in vector["steps"]:
        plaintext = bytes.fromhex(step["plaintext"])
        if step["op"] == "mac_only":
            out = sender.protect_mac_only(plaintext)
        else:
            out = sender.protect(int(step["tag"], 16), plaintext)
        assert out.hex() == step["output"]
        assert receiver.unprotect(bytes.fromhex(step["output"])) == plaintext
    assert sender.counter == receiver.counter == len(vector["steps"]) + 1


def test_conformant_bpp_decodes_end_to_end() -> None:
    """ECDH → KDF → ConfigureISDP, StoreMetadata, ReplaceSessionKeys, then the UPP."""
    otsk = crypto.private_key_from_scalar(Curve.NIST_P256, bytes.fromhex(BPP["euicc_otsk"]))
    otpk = crypto.public_key_from_point(Curve.NIST_P256, bytes.fromhex(BPP["smdp_otpk"]))
    keys = derive_session_keys(
        crypto.ecdh_shared_secret(otsk, otpk),
        host_id=bytes.fromhex(BPP["host_id"]),
        eid=eid_to_bytes(BPP["eid"]),
    )
    assert (keys.s_enc.hex(), keys.s_mac.hex()) == (BPP["s_enc"], BPP["s_mac"])
    channel = SecureChannel.from_session_keys(keys)
    payloads = [bytes.fromhex(p) for p in BPP["es10b_load_bpp_payloads_hex"]]

    assert channel.unprotect(_value(payloads[1])).hex() == BPP["plain_configure_isdp"]
    assert channel.unprotect(payloads[3]).hex() == BPP["plain_store_metadata"]
    rsk = channel.unprotect(_value(payloads[4]))
    assert rsk.hex() == BPP["plain_replace_session_keys"]
    assert channel.counter == 4

    # ReplaceSessionKeysRequest: BF26 { 80 initialMacChainingValue, 81 ppkEnc, 82 ppkCmac }
    body = _value(rsk)
    mcv, enc, mac = body[2:18], body[20:36], body[38:54]
    assert (enc.hex(), mac.hex(), mcv.hex()) == (
        BPP["ppk_enc"],
        BPP["ppk_mac"],
        BPP["ppk_initial_mcv"],
    )
    channel.replace_keys(enc, mac, mcv)
    assert channel.counter == 1

    upp = b"".join(channel.unprotect(segment) for segment in payloads[6:])
    assert hashlib.sha256(upp).hexdigest() == BPP["upp_sha256"]


# ------------------------------------------------------------------ behaviour


def test_padding_is_always_added() -> None:
    sender, _ = _pair()
    out = sender.protect(0x86, b"\x00" * 16)
    assert out[1] == 32 + 8  # one extra block for 80 00.. even on a block boundary


def test_mac_only_segments_advance_the_counter() -> None:
    sender, receiver = _pair()
    segment = sender.protect_mac_only(b"\xbf\x25\x00")
    assert sender.counter == 2
    assert segment[:5] == bytes.fromhex("880bbf2500")
    assert receiver.unprotect(segment) == b"\xbf\x25\x00"
    assert receiver.counter == 2


def test_long_segments_use_ber_long_form_lengths() -> None:
    sender, receiver = _pair()
    out = sender.protect(0x86, b"\x55" * 1000)
    assert out[:4] == bytes.fromhex("868203f8")
    assert receiver.unprotect(out) == b"\x55" * 1000
    out = sender.protect_mac_only(b"\x66" * 150)
    assert out[:3] == bytes.fromhex("88819e")  # 150 + 8 = 0x9e needs the 81 form
    assert receiver.unprotect(out) == b"\x66" * 150


def test_replace_keys_restarts_counter_and_mcv() -> None:
    sender, receiver = _pair()
    receiver.unprotect(sender.protect(0x87, b"one"))
    new = (bytes([1]) * 16, bytes([2]) * 16, bytes([3]) * 16)
    sender.replace_keys(*new)
    receiver.replace_keys(*new)
    assert sender.counter == receiver.counter == 1
    segment = sender.protect(0x86, b"two")
    assert segment == SecureChannel(*new).protect(0x86, b"two")
    assert receiver.unprotect(segment) == b"two"


def test_reprs_show_no_keys() -> None:
    channel = SecureChannel(KEY_ENC, KEY_MAC, MCV0)
    assert repr(channel) == "SecureChannel(counter=1)"


def test_rejected_segment_leaves_state_unchanged() -> None:
    sender, receiver = _pair()
    good = sender.protect(0x87, b"payload")
    with pytest.raises(Scp03tSecurityError, match="C-MAC"):
        receiver.unprotect(good[:-1] + bytes([good[-1] ^ 1]))
    assert receiver.counter == 1
    assert receiver.unprotect(good) == b"payload"


def test_segment_for_a_later_counter_is_rejected() -> None:
    sender, receiver = _pair()
    sender.protect(0x86, b"first")
    with pytest.raises(Scp03tSecurityError):
        receiver.unprotect(sender.protect(0x86, b"second"))


def test_wrong_tags_are_refused() -> None:
    sender, receiver = _pair()
    with pytest.raises(ValueError):
        sender.protect(0x88, b"x")
    with pytest.raises(ValueError):
        sender.protect_mac_only(b"x", tag=0x86)
    with pytest.raises(Scp03tStructureError, match="tag"):
        receiver.unprotect(bytes([0x85, 9]) + b"\x00" * 9)


@pytest.mark.parametrize(
    "tlv",
    [
        b"",
        b"\x86",
        bytes.fromhex("8610") + b"\x00" * 15,
        bytes.fromhex("8680"),
        bytes.fromhex("868400000001") + b"\x00",
        bytes.fromhex("8807") + b"\x00" * 7,
    ],
)
def test_malformed_segments_are_structure_errors(tlv: bytes) -> None:
    _, receiver = _pair()
    with pytest.raises(Scp03tStructureError):
        receiver.unprotect(tlv)


def test_missing_padding_is_a_structure_error() -> None:
    _, receiver = _pair()
    segment = _spec_segment(0x86, b"\x11" * 16, 1, MCV0, encrypt=True)
    with pytest.raises(Scp03tStructureError, match="padding"):
        receiver.unprotect(segment)
    assert receiver.counter == 1


def test_overlong_padding_is_a_structure_error() -> None:
    _, receiver = _pair()
    segment = _spec_segment(0x86, b"\x80" + b"\x00" * 31, 1, MCV0, encrypt=True)
    with pytest.raises(Scp03tStructureError, match="padding"):
        receiver.unprotect(segment)


def test_unaligned_ciphertext_is_a_structure_error() -> None:
    _, receiver = _pair()
    segment = _spec_segment(0x87, b"\x11" * 15, 1, MCV0, encrypt=False)
    with pytest.raises(Scp03tStructureError, match="multiple of 16"):
        receiver.unprotect(segment)


def test_independent_spec_segment_is_accepted() -> None:
    _, receiver = _pair()
    segment = _spec_segment(0x86, b"abc\x80" + b"\x00" * 12, 1, MCV0, encrypt=True)
    assert receiver.unprotect(segment) == b"abc"


def test_key_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="S-ENC"):
        SecureChannel(b"\x00" * 15, KEY_MAC, MCV0)


# ------------------------------------------------------------------ properties

segment_tags = st.sampled_from([0x86, 0x87, 0x88])


@given(tag=segment_tags, plaintext=st.binary(max_size=600))
def test_unprotect_inverts_protect(tag: int, plaintext: bytes) -> None:
    sender, receiver = _pair()
    for _ in range(2):  # twice, so the second run uses a chained MCV and counter 2
        if tag == 0x88:
            segment = sender.protect_mac_only(plaintext)
        else:
            segment = sender.protect(tag, plaintext)
        assert receiver.unprotect(segment) == plaintext


@given(
    tag=segment_tags,
    plaintext=st.binary(max_size=300),
    data=st.data(),
)
def test_any_flipped_byte_is_rejected(tag: int, plaintext: bytes, data: st.DataObject) -> None:
    sender, receiver = _pair()
    if tag == 0x88:
        segment = sender.protect_mac_only(plaintext)
    else:
        segment = sender.protect(tag, plaintext)
    index = data.draw(st.integers(min_value=0, max_value=len(segment) - 1), label="index")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    tampered = bytearray(segment)
    tampered[index] ^= mask
    with pytest.raises(Scp03tError):
        receiver.unprotect(bytes(tampered))
    assert receiver.unprotect(segment) == plaintext


def test_session_keys_is_frozen() -> None:
    keys = SessionKeys(MCV0, KEY_ENC, KEY_MAC)
    with pytest.raises(AttributeError):
        keys.s_enc = b""  # type: ignore[misc]
