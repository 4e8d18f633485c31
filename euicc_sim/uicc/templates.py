"""The file structure templates of the TCA eUICC Profile Package (Annex A), as data.

A template PE (``mf``, ``usim``, ``telecom``, ...) names one template by OID and carries one
field per file of the template. Whatever the PE does not say about a file comes from here:
its file identifier, structure, size, short file identifier, access rule (record number of
EF.ARR) and default content. The values are those of the templates in the TCA eUICC Profile
Package specification, Annex A, checked against ETSI TS 102 221 §13 (MF files), 3GPP TS 31.102
§4 (USIM) and TS 31.103 §4 (ISIM) where those fix them.

Rules the builder applies (TCA PP §8.3):

* a template *created by default* creates every file of the template, also those the PE does
  not list, unless the PE says ``doNotCreate``;
* a template *not created by default* creates only the files the PE lists;
* files are placed in the tree by indentation below: a DF line opens a directory for the
  lines indented under it. The root line of a template is the DF/ADF itself (optional
  templates such as OPT-USIM have no root: their files go into the ADF created before).

Table columns: PE field name, FID (``----``: none, the PE must give it), structure
(``MF``/``DF``/``ADF``, ``TR`` transparent, ``LF`` linear fixed, ``CY`` cyclic, ``BT``
BER-TLV), size (``n`` bytes, ``RxL`` records of L bytes, ``xL`` records of L bytes and a
count the PE gives, ``-`` the PE gives it), SFI (``--``: none), ARR record, default content
(a TS 102 222 fill pattern: the last byte repeats; ending in ``*``: a repeat pattern,
repeated whole; ``-``: all ``FF``).

Templates not described here (CSIM, EAP, IoT, ...) are still built from what the PE itself
says (FCP and content), without defaults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Structure(enum.Enum):
    """File structures of ETSI TS 102 221 §8.2 / TS 102 222."""

    MF = "MF"
    DF = "DF"
    ADF = "ADF"
    TRANSPARENT = "TR"
    LINEAR_FIXED = "LF"
    CYCLIC = "CY"
    BER_TLV = "BT"

    @property
    def is_df(self) -> bool:
        """Whether files of this structure are directories."""
        return self in (Structure.MF, Structure.DF, Structure.ADF)

    @property
    def is_record(self) -> bool:
        """Whether files of this structure hold records."""
        return self in (Structure.LINEAR_FIXED, Structure.CYCLIC)


@dataclass(frozen=True)
class FileTemplate:
    """One file of a template, with the defaults the PE may leave out."""

    name: str  # PE field name, e.g. "ef-imsi"
    fid: int | None
    structure: Structure
    size: int | None  # transparent / BER-TLV size, or number of records for record files
    record_length: int | None
    sfi: int | None
    arr: int | None
    default: bytes | None  # fill pattern (last byte repeats); None: all FF
    repeat: bool  # default is a repeat pattern (repeated whole), marked "*" in the tables
    parent: str | None  # PE field name of the DF it lives in; None: the template's root


@dataclass(frozen=True)
class Template:
    """One file structure template of TCA PP Annex A."""

    oid: str
    name: str
    created_by_default: bool
    files: tuple[FileTemplate, ...]

    def file(self, name: str) -> FileTemplate | None:
        """The template file for PE field ``name``."""
        return next((f for f in self.files if f.name == name), None)


def _size(text: str) -> tuple[int | None, int | None]:
    if text == "-":
        return None, None
    if "x" in text:
        count, length = text.split("x")
        return (int(count) if count else None), int(length)
    return int(text), None


def _parse(oid: str, name: str, created_by_default: bool, table: str) -> Template:
    files: list[FileTemplate] = []
    stack: list[tuple[int, str]] = []  # (indent, DF name)
    for line in table.strip("\n").splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        fname, fid, kind, size, sfi, arr, default = line.split()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        structure = Structure(kind)
        count, length = _size(size)
        files.append(
            FileTemplate(
                name=fname,
                fid=None if fid == "----" else int(fid, 16),
                structure=structure,
                size=count,
                record_length=length,
                sfi=None if sfi == "--" else int(sfi, 16),
                arr=None if arr == "-" else int(arr),
                default=None if default == "-" else bytes.fromhex(default.rstrip("*")),
                repeat=default.endswith("*"),
                parent=stack[-1][1] if stack else None,
            )
        )
        if structure.is_df:
            stack.append((indent, fname))
    return Template(oid, name, created_by_default, tuple(files))


# ETSI TS 102 221 §13; TCA PP Annex A "Files at MF level".
MF = _parse(
    "2.23.143.1.2.1",
    "MF",
    True,
    """
mf                3F00 MF  -      --  14 -
  ef-pl           2F05 TR  2      05  1  FF
  ef-iccid        2FE2 TR  10     02  11 -
  ef-dir          2F00 LF  x-     1E  10 -
  ef-arr          2F06 LF  x-     06  10 -
  ef-umpc         2F08 TR  5      08  10 -
""".replace("x-", "-"),
)

CD = _parse(
    "2.23.143.1.2.2",
    "DF.CD",
    False,
    """
df-cd             7F11 DF  -      --  14 -
  ef-launchpad    6F01 TR  -      --  2  -
  ef-icon         ---- TR  -      --  2  -
""",
)

_PHONEBOOK_FILES = """
  ef-pbr          4F30 LF  -      --  2  -
  ef-ext1         ---- LF  x13    --  5  00FF
  ef-aas          ---- LF  -      --  5  -
  ef-gas          ---- LF  -      --  5  -
  ef-psc          4F22 TR  4      --  5  00
  ef-cc           4F23 TR  2      --  5  00
  ef-puid         4F24 TR  2      --  5  00
  ef-iap          ---- LF  -      --  5  -
  ef-adn          ---- LF  -      --  5  -
  ef-pbc          ---- LF  x2     --  5  00
  ef-anr          ---- LF  -      --  5  -
  ef-puri         ---- LF  -      --  5  -
  ef-email        ---- LF  -      --  5  -
  ef-sne          ---- LF  -      --  5  -
  ef-uid          ---- LF  x2     --  5  00
  ef-grp          ---- LF  -      --  5  00
  ef-ccp1         ---- LF  -      --  5  -
"""

TELECOM = _parse(
    "2.23.143.1.2.3",
    "DF.TELECOM",
    False,
    """
df-telecom        7F10 DF  -      --  14 -
  ef-arr          6F06 LF  -      --  10 -
  ef-rma          6F53 LF  -      --  3  -
  ef-sume         6F54 TR  22     --  3  -
  ef-ice-dn       6FE0 LF  50x24  --  9  -
  ef-ice-ff       6FE1 LF  -      --  9  -
  ef-psismsc      6FE5 LF  -      --  5  -
  df-graphics     5F50 DF  -      --  14 -
    ef-img        4F20 LF  -      --  2  00FF
    ef-iidf       ---- TR  -      --  2  -
    ef-ice-graphics 4F21 BT -     --  9  -
    ef-launch-scws 4F01 TR -      --  10 -
    ef-icon       ---- TR  -      --  10 -
  df-phonebook    5F3A DF  -      --  14 -
"""
    + _PHONEBOOK_FILES.replace("\n  ", "\n    ")
    + """
  df-multimedia   5F3B DF  -      --  14 -
    ef-mml        4F47 BT  -      --  5  -
    ef-mmdf       4F48 BT  -      --  5  -
  df-mmss         5F3C DF  -      --  14 -
    ef-mlpl       4F20 TR  -      01  2  -
    ef-mspl       4F21 TR  -      02  2  -
    ef-mmssmode   4F22 TR  1      03  2  -
  df-mcs          5F3D DF  -      --  14 -
    ef-mst        4F01 TR  -      01  2  -
    ef-mcs-config 4F02 BT  -      02  2  -
  df-v2x          5F3E DF  -      --  14 -
    ef-vst        4F01 TR  -      01  2  -
    ef-v2x-config 4F02 BT  -      02  2  -
    ef-v2xp-pc5   4F03 TR  -      --  2  -
    ef-v2xp-Uu    4F04 TR  -      --  2  -
""",
)

# 3GPP TS 31.102 §4.2; TCA PP Annex A "ADF USIM" (created by default).
USIM = _parse(
    "2.23.143.1.2.4",
    "ADF.USIM",
    True,
    """
adf-usim          ---- ADF -      --  14 -
  ef-imsi         6F07 TR  9      07  2  -
  ef-arr          6F06 LF  -      17  10 -
  ef-keys         6F08 TR  33     08  5  07FF
  ef-keysPS       6F09 TR  33     09  5  07FF
  ef-hpplmn       6F31 TR  1      12  2  0A
  ef-ust          6F38 TR  17     04  2  -
  ef-fdn          6F3B LF  20x26  --  8  -
  ef-sms          6F3C LF  10x176 --  5  00FF
  ef-smsp         6F42 LF  1x38   --  5  -
  ef-smss         6F43 TR  2      --  5  FF
  ef-spn          6F46 TR  17     --  10 -
  ef-est          6F56 TR  1      05  8  -
  ef-start-hfn    6F5B TR  6      0F  5  F00000F00000
  ef-threshold    6F5C TR  3      10  2  FF
  ef-psloci       6F73 TR  14     0C  5  FFFFFFFFFFFFFFFFFFFF0000FF01
  ef-acc          6F78 TR  2      06  2  -
  ef-fplmn        6F7B TR  12     0D  5  FF
  ef-loci         6F7E TR  11     0B  5  FFFFFFFFFFFFFF0000FF01
  ef-ad           6FAD TR  4      03  10 00000002
  ef-ecc          6FB7 LF  1x4    01  10 -
  ef-netpar       6FC4 TR  128    --  5  FF
  ef-epsloci      6FE3 TR  18     1E  5  FFFFFFFFFFFFFFFFFFFFFFFFFFFFFF000001
  ef-epsnsc       6FE4 LF  1x80   18  5  FF
""",
)

# TCA PP Annex A "ADF USIM optional files" (not created by default).
OPT_USIM = _parse(
    "2.23.143.1.2.5",
    "ADF.USIM optional",
    False,
    """
ef-li             6F05 TR  6      02  1  FF
ef-acmax          6F37 TR  3      --  5  00
ef-acm            6F39 CY  1x3    --  7  00
ef-gid1           6F3E TR  8      --  2  -
ef-gid2           6F3F TR  8      --  2  -
ef-msisdn         6F40 LF  1x24   --  2  -
ef-puct           6F41 TR  5      --  5  FFFFFF0000
ef-cbmi           6F45 TR  10     --  5  -
ef-cbmid          6F48 TR  10     0E  2  -
ef-sdn            6F49 LF  10x24  --  2  -
ef-ext2           6F4B LF  10x13  --  8  00FF
ef-ext3           6F4C LF  10x13  --  2  00FF
ef-cbmir          6F50 TR  20     --  5  -
ef-plmnwact       6F60 TR  40     0A  5  FFFFFF0000*
ef-oplmnwact      6F61 TR  40     11  2  FFFFFF0000*
ef-hplmnwact      6F62 TR  5      13  2  FFFFFF0000
ef-dck            6F2C TR  16     --  5  -
ef-cnl            6F32 TR  30     --  2  -
ef-smsr           6F47 LF  10x30  --  5  00FF
ef-bdn            6F4D LF  10x25  --  8  -
ef-ext5           6F4E LF  10x13  --  5  00FF
ef-ccp2           6F4F LF  5x15   16  5  -
ef-ext4           6F55 LF  10x13  --  8  00FF
ef-acl            6F57 TR  101    --  8  00FF
ef-cmi            6F58 LF  10x11  --  2  -
ef-ici            6F80 CY  20x38  14  5  -
ef-oci            6F81 CY  20x37  15  5  -
ef-ict            6F82 CY  1x3    --  7  00
ef-oct            6F83 CY  1x3    --  7  00
ef-vgcs           6FB1 TR  20     --  2  -
ef-vgcss          6FB2 TR  7      --  5  -
ef-vbs            6FB3 TR  20     --  2  -
ef-vbss           6FB4 TR  7      --  5  -
ef-emlpp          6FB5 TR  2      --  2  -
ef-aaem           6FB6 TR  1      --  5  00
ef-hiddenkey      6FC3 TR  4      --  5  -
ef-pnn            6FC5 LF  10x16  19  10 -
ef-opl            6FC6 LF  5x8    1A  10 -
ef-mbdn           6FC7 LF  3x24   --  5  -
ef-ext6           6FC8 LF  10x13  --  5  00FF
ef-mbi            6FC9 LF  10x5   --  5  -
ef-mwis           6FCA LF  10x6   --  5  00
ef-cfis           6FCB LF  10x16  --  5  0100FF
ef-ext7           6FCC LF  10x13  --  5  00FF
ef-spdi           6FCD TR  17     1B  2  -
ef-mmsn           6FCE LF  10x6   --  5  000000FF
ef-ext8           6FCF LF  10x13  --  5  00FF
ef-mmsicp         6FD0 TR  100    --  2  -
ef-mmsup          6FD1 LF  -      --  5  -
ef-mmsucp         6FD2 TR  100    --  5  -
ef-nia            6FD3 LF  5x11   --  2  -
ef-vgcsca         6FD4 TR  -      --  2  00
ef-vbsca          6FD5 TR  -      --  2  00
ef-gbabp          6FD6 TR  -      --  5  -
ef-msk            6FD7 LF  -      --  2  -
ef-muk            6FD8 LF  -      --  2  -
ef-ehplmn         6FD9 TR  15     1D  2  -
ef-gbanl          6FDA LF  -      --  2  -
ef-ehplmnpi       6FDB TR  1      --  2  00
ef-lrplmnsi       6FDC TR  1      --  2  00
ef-nafkca         6FDD LF  -      --  2  -
ef-spni           6FDE TR  -      --  10 00FF
ef-pnni           6FDF LF  -      --  10 00FF
ef-ncp-ip         6FE2 LF  -      --  2  -
ef-ufc 6FE6 TR 30 -- 10 801E60C01E900080040000000000000000F0000000004000000000000080
ef-nasconfig      6FE8 TR  18     --  2  -
ef-uicciari       6FE7 LF  -      --  2  -
ef-pws            6FEC TR  -      --  10 -
ef-fdnuri         6FED LF  -      --  8  -
ef-bdnuri         6FEE LF  -      --  8  -
ef-sdnuri         6FEF LF  -      --  2  -
ef-ial            6FF0 LF  -      --  3  -
ef-ips            6FF1 CY  x4     --  10 -
ef-ipd            6FF2 LF  -      --  3  -
ef-epdgid         6FF3 TR  -      --  2  -
ef-epdgselection  6FF4 TR  -      --  2  -
ef-epdgidem       6FF5 TR  -      --  2  -
ef-epdgselectionem 6FF6 TR -      --  2  -
ef-frompreferred  6FF7 TR  1      --  2  00
ef-imsconfigdata  6FF8 BT  -      --  2  -
ef-3gpppsdataoff  6FF9 TR  4      --  2  -
ef-3gpppsdataoffservicelist 6FFA LF - -- 2 -
ef-xcapconfigdata 6FFC BT  -      --  2  -
ef-earfcnlist     6FFD TR  -      --  10 -
""",
)

PHONEBOOK = _parse(
    "2.23.143.1.2.6",
    "DF.PHONEBOOK (USIM)",
    False,
    "df-phonebook      5F3A DF  -      --  14 -\n" + _PHONEBOOK_FILES,
)

# 3GPP TS 31.102 §4.4.3.
GSM_ACCESS = _parse(
    "2.23.143.1.2.7",
    "DF.GSM-ACCESS",
    False,
    """
df-gsm-access     5F3B DF  -      --  14 -
  ef-kc           4F20 TR  9      01  5  FFFFFFFFFFFFFFFF07
  ef-kcgprs       4F52 TR  9      02  5  FFFFFFFFFFFFFFFF07
  ef-cpbcch       4F63 TR  10     --  5  FF
  ef-invscan      4F64 TR  1      --  2  00
""",
)

# 3GPP TS 31.103 §4.2.
ISIM = _parse(
    "2.23.143.1.2.8",
    "ADF.ISIM",
    True,
    """
adf-isim          ---- ADF -      --  14 -
  ef-impi         6F02 TR  -      02  2  -
  ef-impu         6F04 LF  1x-    04  2  -
  ef-domain       6F03 TR  -      05  2  -
  ef-ist          6F07 TR  14     07  2  -
  ef-ad           6FAD TR  3      03  10 000000
  ef-arr          6F06 LF  -      06  10 -
""".replace("1x-", "-"),
)

OPT_ISIM = _parse(
    "2.23.143.1.2.9",
    "ADF.ISIM optional",
    False,
    """
ef-pcscf          6F09 LF  -      --  2  -
ef-sms            6F3C LF  10x176 --  5  00FF
ef-smsp           6F42 LF  1x38   --  5  -
ef-smss           6F43 TR  2      --  5  FF
ef-smsr           6F47 LF  10x30  --  5  00FF
ef-gbabp          6FD5 TR  -      --  5  -
ef-gbanl          6FD7 LF  -      --  2  -
ef-nafkca         6FDD LF  -      --  2  -
ef-uicciari       6FE7 LF  -      --  2  -
ef-frompreferred  6FF7 TR  1      --  2  00
ef-imsconfigdata  6FF8 BT  -      --  2  -
ef-xcapconfigdata 6FFC BT  -      --  2  -
ef-webrtcuri      6FFA LF  -      --  2  -
""",
)

# 3GPP TS 31.102 §4.4.11 (DF.5GS) and §4.4.12 (DF.SAIP).
DF_5GS = _parse(
    "2.23.143.1.2.13",
    "DF.5GS",
    False,
    """
df-df-5gs         5FC0 DF  -      --  14 -
  ef-5gs3gpploci  4F01 TR  20     01  5  FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000001
  ef-5gsn3gpploci 4F02 TR  20     02  5  FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000001
  ef-5gs3gppnsc   4F03 LF  1x57   03  5  FF
  ef-5gsn3gppnsc  4F04 LF  1x57   04  5  FF
  ef-5gauthkeys   4F05 TR  110    05  5  -
  ef-uac-aic      4F06 TR  4      06  2  -
  ef-suci-calc-info 4F07 TR -     07  2  FF
  ef-opl5g        4F08 LF  x10    08  10 FF
  ef-supinai      4F09 TR  -      09  2  -
  ef-routing-indicator 4F0A TR 4  0A  2  F0FFFFFF
  ef-ursp         4F0B BT  -      --  2  -
  ef-tn3gppsnn    4F0C TR  1      0C  2  00
""",
)

DF_SAIP = _parse(
    "2.23.143.1.2.14",
    "DF.SAIP",
    False,
    """
df-df-saip        5FD0 DF  -      --  14 -
  ef-suci-calc-info-usim 4F01 TR - -- 3  FF
""",
)

#: Templates by OID; a versioned OID (``...2.4.2``) uses its base template.
TEMPLATES: dict[str, Template] = {
    t.oid: t
    for t in (
        MF,
        CD,
        TELECOM,
        USIM,
        OPT_USIM,
        PHONEBOOK,
        GSM_ACCESS,
        ISIM,
        OPT_ISIM,
        DF_5GS,
        DF_SAIP,
    )
}


def template_for(oid: str) -> Template | None:
    """The template for a templateID (an exact OID or a version of a known one)."""
    while oid:
        found = TEMPLATES.get(oid)
        if found is not None:
            return found
        if oid.count(".") <= 4:  # 2.23.143.1.2 itself is no template
            return None
        oid = oid.rsplit(".", 1)[0]
    return None
