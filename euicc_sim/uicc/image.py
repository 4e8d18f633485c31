"""Build a profile's UICC side from its SAIP package: file tree, initial contents, PINs, AKA.

Pure: package bytes in, a :class:`ProfileImage` out. The PEs are applied in package order
as TCA eUICC Profile Package §8 describes:

* a template PE (``mf``, ``usim``, ``telecom``, ...) creates the files of its template
  (:mod:`euicc_sim.uicc.templates`): every file for a template created by default (unless
  ``doNotCreate``), the listed ones otherwise; what a file's FCP leaves out comes from the
  template; ``fillFileOffset`` skips bytes, ``fillFileContent`` writes at the current offset;
* ``genericFileManagement`` runs its commands: ``filePath`` (from the MF, an ADF addressed by
  its temporary file identifier) selects where ``createFCP`` creates, and fill commands write
  into the file created last; a ``linkPath`` makes the new EF share another EF's content;
* ``pinCodes`` belong to the DF or ADF the last template PE created (the MF's are the global
  PINs), or point (``filePath``) to the PINs of another ADF; ``pukCodes`` are card-wide;
* ``akaParameter`` belongs to the ADF (USIM, ISIM) created last.

PEs the UICC side does not interpret (security domains, RFM, applications, CDMA
parameters, non-standard) are skipped. A package that cannot be built raises
:class:`ImageError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from euicc_protocol import saip, schema

from .files import Node
from .templates import FileTemplate, Structure, Template, template_for

_ADF_PE = {"usim": "usim", "isim": "isim", "csim": "csim"}
_ADF_OF_OPTIONAL = {
    "opt-usim": "usim",
    "gsm-access": "usim",
    "df-5gs": "usim",
    "df-saip": "usim",
    "df-snpn": "usim",
    "df-5gprose": "usim",
    "phonebook": "usim",
    "eap": "usim",
    "opt-isim": "isim",
    "opt-csim": "csim",
}

# Key references (TS 102 221 §9.5.1): global PINs and ADMs live in the MF's context.
GLOBAL_REFS = frozenset(range(0x01, 0x09)) | frozenset(range(0x0A, 0x0F))


class ImageError(ValueError):
    """A profile package cannot be turned into a file system (says what and where)."""


@dataclass
class PinConfig:
    """One PIN of PE-PINCodes."""

    key_ref: int
    value: bytes  # 8 bytes, padded with FF
    puk_ref: int | None
    attributes: int
    max_attempts: int
    retries: int


@dataclass
class PukConfig:
    """One PUK of PE-PUKCodes."""

    key_ref: int
    value: bytes
    max_attempts: int
    retries: int


@dataclass(frozen=True)
class AkaConfig:
    """PE-AKAParameter: the algorithm of an ADF and its parameters."""

    algorithm: int  # 1 Milenage, 2 TUAK, 3 USIM test algorithm
    options: int
    key: bytes
    opc: bytes
    rotation: bytes = bytes.fromhex("4000204060")
    xoring: bytes = (
        bytes(15)
        + b"\x00"
        + bytes(15)
        + b"\x01"
        + bytes(15)
        + b"\x02"
        + bytes(15)
        + b"\x04"
        + bytes(15)
        + b"\x08"
    )
    keccak_iterations: int = 1
    sqn_options: int = 0x02
    sqn_delta: int = 0x000010000000
    sqn_age_limit: int = 0x000010000000
    sqn_init: tuple[int, ...] = (0,) * 32


@dataclass
class ProfileImage:
    """Everything the UICC side of one profile starts from."""

    mf: Node
    nodes: dict[str, Node] = field(default_factory=dict)
    adfs: list[Node] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)
    pins: dict[tuple[str, int], PinConfig] = field(default_factory=dict)
    pin_alias: dict[str, str] = field(default_factory=dict)  # DF key -> DF key holding its PINs
    puks: dict[int, PukConfig] = field(default_factory=dict)
    aka: dict[str, AkaConfig] = field(default_factory=dict)  # ADF key -> parameters

    def adf_by_aid(self, aid: bytes) -> Node | None:
        """The ADF whose DF name is ``aid``."""
        return next((a for a in self.adfs if a.df_name == aid), None)


def _fill(pattern: bytes | None, repeat: bytes | None, size: int, record_length: int) -> bytes:
    """Initial content per TS 102 222: a fill pattern's last byte repeats to the end (of each
    record for record files); a repeat pattern repeats whole."""
    unit = record_length or size
    if unit <= 0:
        return b""
    if repeat:
        one = (repeat * (unit // len(repeat) + 1))[:unit]
    elif pattern:
        one = (pattern + pattern[-1:] * unit)[:unit]
    else:
        one = b"\xff" * unit
    return one * (size // unit) if record_length else one


class _Builder:
    def __init__(self) -> None:
        mf = Node("3F00", "mf", Structure.MF, 0x3F00)
        self.image = ProfileImage(mf=mf, nodes={mf.key: mf})
        self.mf_created = False
        self.last_adf: dict[str, Node] = {}
        self.by_temp_fid: dict[int, Node] = {}
        self.pin_context: Node = mf
        self.aka_adf: Node | None = None
        self.current: Node | None = None  # file the fill commands write into
        self.offset = 0
        self.growable: set[str] = set()  # EFs of unknown size: their content sets it

    # -- file creation ---------------------------------------------------------------------

    def _add(self, node: Node, parent: Node | None) -> Node:
        if parent is not None:
            key_part = f"ADF{node.fid:04X}" if node.is_adf else f"{node.fid:04X}"
            node.key = f"{parent.key}/{key_part}"
            node.parent = parent
            if node.fid is not None:
                parent.children[node.fid] = node
        if node.key in self.image.nodes and node is not self.image.nodes[node.key]:
            raise ImageError(f"file {node.key} created twice")
        self.image.nodes[node.key] = node
        if node.is_adf:
            self.image.adfs.append(node)
            if node.fid is not None:
                self.by_temp_fid[node.fid] = node
        return node

    def _create(
        self, fcp: dict[str, Any], parent: Node, tpl: FileTemplate | None, name: str, *, gfm: bool
    ) -> Node:
        descriptor = bytes(fcp.get("fileDescriptor", b""))
        if tpl is not None:
            structure = tpl.structure
        elif descriptor:
            structure = _structure_of(descriptor)
        elif "dfName" in fcp:
            structure = Structure.ADF
        else:
            raise ImageError(f"{name}: no file descriptor and no template default")
        if descriptor and not structure.is_df and tpl is not None:
            structure = _structure_of(descriptor)  # the package may change the structure
        raw_fid = fcp.get("fileID")
        fid = int.from_bytes(raw_fid, "big") if raw_fid else (tpl.fid if tpl else None)
        if fid is None:
            raise ImageError(f"{name}: no file identifier")
        node = Node("", name, structure, fid)
        node.lcsi = bytes(fcp.get("lcsi", b"\x05"))[0]
        node.arr = bytes(fcp.get("securityAttributesReferenced", b""))
        if not node.arr and tpl is not None and tpl.arr is not None:
            node.arr = bytes((tpl.arr,))
        if structure.is_df:
            node.df_name = bytes(fcp["dfName"]) if "dfName" in fcp else None
            node.pin_refs = tuple(bytes(fcp.get("pinStatusTemplateDO", b"")))
            if structure is Structure.ADF:
                return self._add(node, self.image.mf)
            return self._add(node, parent)
        # EF: SFI, structure, size, content.
        if "shortEFID" in fcp:
            sfi_raw = bytes(fcp["shortEFID"])
            node.sfi = sfi_raw[0] >> 3 if sfi_raw else None
        elif tpl is not None:
            node.sfi = tpl.sfi
        elif gfm:
            node.sfi = fid & 0x1F  # TS 102 222: absent SFI DO means the FID's 5 low bits
        if structure.is_record:
            if len(descriptor) >= 4:
                node.record_length = int.from_bytes(descriptor[2:4], "big")
            elif tpl is not None and tpl.record_length:
                node.record_length = tpl.record_length
        size_raw = fcp.get("efFileSize")
        if size_raw:
            node.size = int.from_bytes(size_raw, "big")
        elif tpl is not None and tpl.size is not None:
            node.size = tpl.size * (node.record_length if structure.is_record else 1)
        elif structure.is_record and node.record_length:
            node.size = node.record_length
        elif not structure.is_record:
            self.growable.add(node.key or name)
        if "linkPath" in fcp and fcp["linkPath"]:
            node.link = self._resolve_path(bytes(fcp["linkPath"]), name)
        self._add(node, parent)
        if name in self.growable:
            self.growable.discard(name)
            self.growable.add(node.key)
        info = fcp.get("proprietaryEFInfo", {})
        fill = info.get("fillPattern")
        repeat = info.get("repeatPattern")
        if fill is None and repeat is None and tpl is not None:
            fill, repeat = (None, tpl.default) if tpl.repeat else (tpl.default, None)
        if node.link is None:
            self.image.contents[node.key] = _fill(fill, repeat, node.size, node.record_length)
        return node

    def _resolve_path(self, path: bytes, what: str) -> Node:
        if len(path) % 2:
            raise ImageError(f"{what}: odd path length")
        node = self.image.mf
        for i in range(0, len(path), 2):
            fid = int.from_bytes(path[i : i + 2], "big")
            if i == 0 and fid == 0x3F00:
                continue
            found = self.by_temp_fid.get(fid) if node is self.image.mf else None
            found = found or node.children.get(fid)
            if found is None:
                raise ImageError(f"{what}: path {path.hex().upper()} does not exist")
            node = found
        return node

    def _write(self, data: bytes, what: str) -> None:
        node = self.current
        if node is None or node.is_df:
            raise ImageError(f"{what}: fill command without a file to fill")
        key = node.content_node.key
        content = bytearray(self.image.contents.get(key, b""))
        end = self.offset + len(data)
        if end > len(content) and key in self.growable:
            content.extend(b"\xff" * (end - len(content)))
            node.content_node.size = end
        if end > len(content):
            raise ImageError(f"{what}: content beyond the end of {node.key}")
        content[self.offset : end] = data
        self.image.contents[key] = bytes(content)
        self.offset = end

    # -- PEs -------------------------------------------------------------------------------

    def template_pe(self, pe_type: str, value: dict[str, Any]) -> None:
        tpl = template_for(value.get("templateID", ""))
        if pe_type in _ADF_OF_OPTIONAL:
            adf = self.last_adf.get(_ADF_OF_OPTIONAL[pe_type])
            if adf is None:
                raise ImageError(f"{pe_type} PE before the ADF it belongs to")
            root: Node = adf
        else:
            root = self.image.mf
        names = [k for k in value if not k.endswith("-header") and k != "templateID"]
        if tpl is not None and tpl.created_by_default:
            names += [f.name for f in tpl.files if f.name not in value]
        created: dict[str, Node] = {}
        ordered = self._template_order(names, tpl)
        untemplated_root: Node | None = None
        for name in ordered:
            file = value.get(name, [])
            if any(kind == "doNotCreate" for kind, _ in file) and pe_type != "mf":
                continue
            ftpl = tpl.file(name) if tpl is not None else None
            parent = untemplated_root or root
            if ftpl is not None and ftpl.parent is not None:
                found = created.get(ftpl.parent)
                if found is None:
                    continue  # its DF was not created: neither is the file
                parent = found
            fcp: dict[str, Any] = {}
            for kind, item in file:
                if kind == "fileDescriptor":
                    fcp = item
            if name == "mf":
                node = self.image.mf
                node.lcsi = bytes(fcp.get("lcsi", b"\x05"))[0]
                node.arr = bytes(fcp.get("securityAttributesReferenced", b"\x0e"))
                node.pin_refs = tuple(bytes(fcp.get("pinStatusTemplateDO", b"")))
                self.mf_created = True
            elif ftpl is None and not fcp:
                continue  # nothing known about this file
            else:
                node = self._create(fcp, parent, ftpl, name, gfm=False)
            created[name] = node
            self.current, self.offset = node, 0
            for kind, item in file:
                if kind == "fillFileOffset":
                    self.offset += item
                elif kind == "fillFileContent":
                    self._write(bytes(item), f"{pe_type}.{name}")
            if node.is_df and (ftpl is None or ftpl.parent is None):
                self.pin_context = node
                if tpl is None and untemplated_root is None:
                    untemplated_root = node  # without a template, files go into its root DF
            if node.is_adf:
                self.last_adf[_ADF_PE.get(pe_type, pe_type)] = node
                self.aka_adf = node

    @staticmethod
    def _template_order(names: list[str], tpl: Template | None) -> list[str]:
        if tpl is None:
            return names
        rank = {f.name: i for i, f in enumerate(tpl.files)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def generic_file_management(self, value: dict[str, Any]) -> None:
        for command in value["fileManagementCMD"]:
            where = self.image.mf
            self.current = None
            for kind, item in command:
                if kind == "filePath":
                    where = self._resolve_path(bytes(item), "filePath")
                    self.current = None
                elif kind == "createFCP":
                    self.current = self._create(item, where, None, "gfm", gfm=True)
                    self.offset = 0
                elif kind == "fillFileOffset":
                    self.offset += item
                elif kind == "fillFileContent":
                    self._write(bytes(item), "genericFileManagement")

    def pin_codes(self, value: dict[str, Any]) -> None:
        kind, item = value["pinCodes"]
        context = self.pin_context
        if kind == "filePath":
            target = self._resolve_path(bytes(item), "pinCodes filePath")
            self.image.pin_alias[context.key] = target.key
            return
        for pin in item:
            ref = pin["keyReference"]
            owner = self.image.mf if ref in GLOBAL_REFS else context
            counter = pin.get("maxNumOfAttemps-retryNumLeft", 0x33)
            self.image.pins[(owner.key, ref)] = PinConfig(
                key_ref=ref,
                value=bytes(pin["pinValue"]),
                puk_ref=pin.get("unblockingPINReference"),
                attributes=pin.get("pinAttributes", 7),
                max_attempts=counter >> 4,
                retries=counter & 0x0F,
            )

    def puk_codes(self, value: dict[str, Any]) -> None:
        for puk in value["pukCodes"]:
            counter = puk.get("maxNumOfAttemps-retryNumLeft", 0xAA)
            self.image.puks[puk["keyReference"]] = PukConfig(
                key_ref=puk["keyReference"],
                value=bytes(puk["pukValue"]),
                max_attempts=counter >> 4,
                retries=counter & 0x0F,
            )

    def aka_parameter(self, value: dict[str, Any]) -> None:
        if self.aka_adf is None:
            raise ImageError("akaParameter PE before any ADF")
        kind, algo = value["algoConfiguration"]
        if kind != "algoParameter":
            return  # mappingParameter: shares another application's keys (not emulated)
        init = value.get("sqnInit")
        self.image.aka[self.aka_adf.key] = AkaConfig(
            algorithm=int(algo["algorithmID"]),
            options=bytes(algo["algorithmOptions"])[0],
            key=bytes(algo["key"]),
            opc=bytes(algo["opc"]),
            rotation=bytes(algo.get("rotationConstants", AkaConfig.rotation)),
            xoring=bytes(algo.get("xoringConstants", AkaConfig.xoring)),
            keccak_iterations=int(algo.get("numberOfKeccak", 1)),
            sqn_options=bytes(value.get("sqnOptions", b"\x02"))[0],
            sqn_delta=int.from_bytes(value.get("sqnDelta", b"\x00\x00\x10\x00\x00\x00"), "big"),
            sqn_age_limit=int.from_bytes(
                value.get("sqnAgeLimit", b"\x00\x00\x10\x00\x00\x00"), "big"
            ),
            sqn_init=tuple(int.from_bytes(s, "big") for s in init) if init else (0,) * 32,
        )


def _structure_of(descriptor: bytes) -> Structure:
    kind = descriptor[0] & 0xBF  # ignore the shareable bit
    if kind == 0x38:
        return Structure.DF
    if descriptor[0] & 0x3F == 0x39:
        return Structure.BER_TLV
    return {
        0x01: Structure.TRANSPARENT,
        0x02: Structure.LINEAR_FIXED,
        0x06: Structure.CYCLIC,
    }.get(kind & 0x07 if kind & 0x38 == 0 else -1, Structure.TRANSPARENT)


_TEMPLATE_PES = frozenset(
    {
        "mf",
        "cd",
        "telecom",
        "usim",
        "opt-usim",
        "isim",
        "opt-isim",
        "phonebook",
        "gsm-access",
        "csim",
        "opt-csim",
        "eap",
        "df-5gs",
        "df-saip",
        "df-snpn",
        "df-5gprose",
    }
)


def build_image(package: bytes) -> ProfileImage:
    """Build the UICC side of a profile from its Unprotected Profile Package."""
    try:
        parsed = saip.read_package(package)
    except saip.SaipError as exc:
        raise ImageError(f"not a valid profile package: {exc}") from exc
    spec = schema.spec()
    builder = _Builder()
    for index, pe in enumerate(parsed.pes):
        pe_type, value = spec.decode("ProfileElement", pe.raw)
        try:
            if pe_type in _TEMPLATE_PES:
                builder.template_pe(pe_type, value)
            elif pe_type == "genericFileManagement":
                builder.generic_file_management(value)
            elif pe_type == "pinCodes":
                builder.pin_codes(value)
            elif pe_type == "pukCodes":
                builder.puk_codes(value)
            elif pe_type == "akaParameter":
                builder.aka_parameter(value)
        except ImageError as exc:
            raise ImageError(f"PE #{index} ({pe_type}): {exc}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ImageError(f"PE #{index} ({pe_type}): cannot be built: {exc!r}") from exc
    if not builder.mf_created:
        raise ImageError("the package has no mf PE")
    return builder.image
