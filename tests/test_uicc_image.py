"""Building a profile's UICC side from its SAIP package (euicc_sim.uicc.image, templates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from euicc_protocol import schema
from euicc_sim.uicc.image import ImageError, build_image
from euicc_sim.uicc.templates import TEMPLATES, Structure, template_for

TS48 = sorted((Path(__file__).resolve().parents[1] / "profiles" / "ts48").glob("*.der"))
USIM_AID = bytes.fromhex("A0000000871002FF49FF0589")


@pytest.mark.parametrize("path", TS48, ids=lambda p: p.stem)
def test_every_ts48_package_builds_mf_usim_isim_csim(path: Path) -> None:
    image = build_image(path.read_bytes())
    assert [a.df_name.hex().upper() for a in image.adfs if a.df_name] == [
        "A0000000871002FF49FF0589",
        "A0000003431002F310FFFF89020000FF",
        "A0000000871004FF49FF0589",
    ]
    usim = image.adf_by_aid(USIM_AID)
    assert usim is not None
    assert image.contents[usim.key + "/6F07"] == bytes.fromhex("080910101032540636")
    ef_dir = image.nodes["3F00/2F00"]
    assert ef_dir.structure is Structure.LINEAR_FIXED and ef_dir.sfi == 0x1E
    assert image.contents["3F00/2F00"].startswith(bytes.fromhex("61144F0CA0000000871002FF49FF0589"))
    # Test algorithm with the TS.48 Ki for the USIM and the ISIM.
    assert {c.algorithm for c in image.aka.values()} == {3}
    assert all(c.key == bytes(range(16)) for c in image.aka.values())
    pin1 = image.pins[("3F00", 0x01)]
    assert pin1.value == b"0000\xff\xff\xff\xff" and pin1.retries == 3 and pin1.puk_ref == 1
    assert image.puks[1].value == b"11111111" and image.puks[1].retries == 10
    assert image.pins[(usim.key, 0x81)].value == b"9999\xff\xff\xff\xff"


def test_template_defaults_fill_what_the_package_leaves_out() -> None:
    image = build_image(TS48[-1].read_bytes())
    usim = image.adf_by_aid(USIM_AID)
    assert usim is not None
    imsi = image.nodes[usim.key + "/6F07"]
    assert imsi.size == 9 and imsi.sfi == 0x07  # neither is in the package
    keys = image.nodes[usim.key + "/6F08"]
    assert image.contents[keys.key] == b"\x07" + b"\xff" * 32  # fill pattern 07 FF..
    iccid = image.nodes["3F00/2FE2"]
    assert iccid.size == 10 and iccid.sfi == 0x02


def test_linked_files_share_their_target() -> None:
    image = build_image(TS48[-1].read_bytes())
    links = [n for n in image.nodes.values() if n.link is not None]
    assert links, "TS.48 DF.TELECOM links EFs to the USIM"
    for node in links:
        assert node.content_node.key in image.contents and node.key not in image.contents


def test_templates_are_known_by_oid_and_version() -> None:
    assert template_for("2.23.143.1.2.4") is TEMPLATES["2.23.143.1.2.4"]
    assert template_for("2.23.143.1.2.4.2") is TEMPLATES["2.23.143.1.2.4"]
    assert template_for("2.23.143.1.2.99") is None
    usim = TEMPLATES["2.23.143.1.2.4"]
    imsi = usim.file("ef-imsi")
    assert imsi is not None and (imsi.fid, imsi.size, imsi.sfi) == (0x6F07, 9, 0x07)
    assert usim.created_by_default and not TEMPLATES["2.23.143.1.2.5"].created_by_default


def _without(package: bytes, pe_name: str) -> bytes:
    spec = schema.spec()
    out, pos = b"", 0
    while pos < len(package):
        (name, _), used = spec.decode_with_length("ProfileElement", package[pos:])
        if name != pe_name:
            out += package[pos : pos + used]
        pos += used
    return out


def test_package_without_mf_is_refused() -> None:
    with pytest.raises(ImageError, match="mf|USIM|ADF|PE"):
        build_image(_without(TS48[0].read_bytes(), "mf"))


def test_garbage_is_refused() -> None:
    with pytest.raises(ImageError, match="not a valid profile package"):
        build_image(b"\x30\x00")
