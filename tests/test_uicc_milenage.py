"""MILENAGE known-answer tests (3GPP TS 35.208, Document 4: design conformance test data)."""

from __future__ import annotations

import pytest

from euicc_sim.uicc.milenage import Milenage, opc_from_op

h = bytes.fromhex

# 3GPP TS 35.208 §4.3, test set 1 (also TS 35.207 §5.3, test set 1).
SET1 = {
    "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
    "rand": "23553cbe9637a89d218ae64dae47bf35",
    "sqn": "ff9bb4d0b607",
    "amf": "b9b9",
    "op": "cdc202d5123e20f62b6d676ac72cb318",
    "opc": "cd63cb71954a9f4e48a5994e37a02baf",
    "f1": "4a9ffac354dfafb3",
    "f1star": "01cfaf9ec4e871e9",
    "f2": "a54211d5e3ba50bf",
    "f3": "b40ba9a3c58b2a05bbf0d987b21bf8cb",
    "f4": "f769bcd751044604127672711c6d3441",
    "f5": "aa689c648370",
    "f5star": "451e8beca43b",
}


def test_opc_is_derived_from_op_as_in_test_set_1() -> None:
    assert opc_from_op(h(SET1["k"]), h(SET1["op"])) == h(SET1["opc"])


@pytest.mark.parametrize("from_op", [True, False], ids=["op", "opc"])
def test_test_set_1_all_functions(from_op: bool) -> None:
    if from_op:
        m = Milenage(h(SET1["k"]), op=h(SET1["op"]))
    else:
        m = Milenage(h(SET1["k"]), h(SET1["opc"]))
    rand = h(SET1["rand"])
    assert m.f1_f1star(rand, h(SET1["sqn"]), h(SET1["amf"])) == (h(SET1["f1"]), h(SET1["f1star"]))
    out = m.f2345(rand)
    assert (out.res, out.ck, out.ik, out.ak) == (
        h(SET1["f2"]),
        h(SET1["f3"]),
        h(SET1["f4"]),
        h(SET1["f5"]),
    )
    assert m.f5star(rand) == h(SET1["f5star"])


def test_test_set_2_mac_res_ck() -> None:
    # 3GPP TS 35.208 §4.3, test set 2.
    m = Milenage(h("0396eb317b6d1c36f19c1c84cd6ffd16"), op=h("ff53bade17df5d4e793073ce9d7579fa"))
    rand = h("c00d603103dcee52c4478119494202e8")
    assert m.f1_f1star(rand, h("fd8eef40df7d"), h("af17"))[0] == h("5df5b31807e258b0")
    out = m.f2345(rand)
    assert out.res == h("d3a628ed988620f0")
    assert out.ck == h("58c433ff7a7082acd424220f2b67c556")


def test_profile_constants_equal_to_the_defaults_give_the_same_results() -> None:
    rotation = h("4000204060")
    xoring = b"".join(bytes(15) + bytes((v,)) for v in (0, 1, 2, 4, 8))
    m = Milenage.from_profile(h(SET1["k"]), h(SET1["opc"]), rotation, xoring)
    assert m.f2345(h(SET1["rand"])).res == h(SET1["f2"])


def test_other_operator_constants_change_the_output() -> None:
    xoring = b"".join(bytes(15) + bytes((v,)) for v in (1, 2, 3, 4, 5))
    m = Milenage.from_profile(h(SET1["k"]), h(SET1["opc"]), h("4000204060"), xoring)
    assert m.f2345(h(SET1["rand"])).res != h(SET1["f2"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"k": bytes(15), "opc": bytes(16)},
        {"k": bytes(16)},
        {"k": bytes(16), "opc": bytes(16), "op": bytes(16)},
        {"k": bytes(16), "opc": bytes(15)},
    ],
)
def test_wrong_key_material_is_refused(kwargs: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        Milenage(**kwargs)  # type: ignore[arg-type]
