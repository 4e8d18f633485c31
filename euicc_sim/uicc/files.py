"""The file tree of one profile (ETSI TS 102 221 §8): nodes, their FCP, path resolution.

A :class:`Node` is one MF, DF, ADF or EF with the attributes the FCP reports; content is
kept apart (:mod:`euicc_sim.uicc.content`), keyed by :attr:`Node.key`, so the tree itself is
immutable once built and the same tree serves every logical channel.

ADFs hang below the MF for bookkeeping but are not reachable by file identifier: TS 102 221
§8.4.1 selects them by AID only, and the file identifier a profile package gives an ADF is a
*temporary* one, used inside the package to address files below it. ``7FFF`` in a path is the
current ADF (§8.4.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .templates import Structure

#: Life cycle status "operational, activated" (TS 102 221 §11.1.1.4.9).
LCSI_ACTIVATED = 0x05


@dataclass(eq=False)
class Node:
    """One file of the tree."""

    key: str  # stable name of the file inside its profile: "3F00/ADF7FD0/6F07"
    name: str  # PE field name or "gfm" for files made by genericFileManagement
    structure: Structure
    fid: int | None
    parent: Node | None = None
    sfi: int | None = None
    record_length: int = 0
    size: int = 0  # EF: file size (records: count x length); DF: unused
    lcsi: int = LCSI_ACTIVATED
    arr: bytes = b""  # securityAttributesReferenced as given: EF.ARR FID + record, or record
    df_name: bytes | None = None
    pin_refs: tuple[int, ...] = ()  # key references of the PIN status template (DF/ADF)
    link: Node | None = None  # an EF whose content this one shares (TS 102 222 linked file)
    children: dict[int, Node] = field(default_factory=dict)

    @property
    def is_df(self) -> bool:
        """Whether this is the MF, a DF or an ADF."""
        return self.structure.is_df

    @property
    def is_adf(self) -> bool:
        """Whether this is an ADF."""
        return self.structure is Structure.ADF

    @property
    def record_count(self) -> int:
        """Number of records of a record file (0 otherwise)."""
        if not self.structure.is_record or not self.record_length:
            return 0
        return self.size // self.record_length

    @property
    def content_node(self) -> Node:
        """The node whose content this file shows (itself unless it is a link)."""
        node = self
        while node.link is not None:
            node = node.link
        return node

    @property
    def adf(self) -> Node | None:
        """The ADF this file belongs to (itself for an ADF), or None below the MF."""
        node: Node | None = self
        while node is not None and not node.is_adf:
            node = node.parent
        return node

    def ancestors(self) -> list[Node]:
        """This node and its parents up to the MF (for a DF: itself first)."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def child(self, fid: int) -> Node | None:
        """The child with file identifier ``fid`` (ADFs are never children by FID)."""
        found = self.children.get(fid)
        return None if found is None or found.is_adf else found

    def find_by_sfi(self, sfi: int) -> Node | None:
        """The EF of this DF with short file identifier ``sfi``."""
        return next((c for c in self.children.values() if not c.is_df and c.sfi == sfi), None)

    def __repr__(self) -> str:  # keep trees readable in test failures
        return f"Node({self.key}, {self.structure.name})"


# -- FCP (ETSI TS 102 221 §11.1.1.3) --------------------------------------------------------------


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV with a one-byte tag (lengths up to 65535)."""
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    if n < 0x100:
        return bytes((tag, 0x81, n)) + value
    return bytes((tag, 0x82)) + n.to_bytes(2, "big") + value


_DESCRIPTOR_BYTE = {
    Structure.TRANSPARENT: 0x41,  # shareable, working EF, transparent
    Structure.LINEAR_FIXED: 0x42,
    Structure.CYCLIC: 0x46,
    Structure.BER_TLV: 0x79,  # shareable, BER-TLV structure (TS 102 221 Table 11.5)
}


def _size_bytes(n: int) -> bytes:
    return n.to_bytes(max(2, (n.bit_length() + 7) // 8), "big")


def arr_reference(node: Node) -> bytes:
    """The ``8B`` value: EF.ARR file identifier and record number.

    A one-byte reference in the package names the EF.ARR implicitly (TCA PP, Fcp
    securityAttributesReferenced): ``2F06`` for the MF, ADFs and files directly below the
    MF, ``6F06`` for any other file.
    """
    if len(node.arr) == 1:
        parent = node.parent
        implicit = (
            node.is_adf or node.parent is None or (parent is not None and parent.parent is None)
        )
        return (b"\x2f\x06" if implicit else b"\x6f\x06") + node.arr
    return node.arr


def fcp(node: Node, *, ps_do: int, total_size: int = 0) -> bytes:
    """The FCP template (``62``) of ``node``; ``ps_do`` is the PIN status byte for DFs."""
    body = bytearray()
    if node.is_df:
        body += tlv(0x82, b"\x78\x21")  # shareable DF; data coding byte 21
        body += tlv(0x83, (0x7FFF if node.is_adf else (node.fid or 0)).to_bytes(2, "big"))
        if node.df_name:
            body += tlv(0x84, node.df_name)
        if node.parent is None:
            # MF: UICC characteristics (clock stop allowed) and TERMINAL CAPABILITY support.
            body += tlv(0xA5, tlv(0x80, b"\x71") + tlv(0x87, b"\x01"))
        body += tlv(0x8A, bytes((node.lcsi,)))
        ref = arr_reference(node)
        if ref:
            body += tlv(0x8B, ref)
        template = tlv(0x90, bytes((ps_do,)))
        for ref_byte in node.pin_refs:
            template += tlv(0x83, bytes((ref_byte,)))
        body += tlv(0xC6, template)
        body += tlv(0x81, _size_bytes(total_size))
        return tlv(0x62, bytes(body))
    target = node.content_node
    descriptor = bytes((_DESCRIPTOR_BYTE[target.structure], 0x21))
    if target.structure.is_record:
        descriptor += target.record_length.to_bytes(2, "big") + bytes((target.record_count,))
    body += tlv(0x82, descriptor)
    body += tlv(0x83, (node.fid or 0).to_bytes(2, "big"))
    body += tlv(0x8A, bytes((node.lcsi,)))
    ref = arr_reference(node)
    if ref:
        body += tlv(0x8B, ref)
    body += tlv(0x80, _size_bytes(target.size))
    if target.structure is Structure.BER_TLV:
        body += tlv(0x81, _size_bytes(target.size))
    # 88 absent would mean "SFI = 5 low bits of the FID"; say exactly what the file has.
    body += tlv(0x88, b"" if node.sfi is None else bytes((node.sfi << 3,)))
    return tlv(0x62, bytes(body))
