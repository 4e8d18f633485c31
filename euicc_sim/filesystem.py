"""A minimal UICC file system (ETSI TS 102 221) so PC/SC tools can start up.

Three files, all under the MF::

    3F00 MF        DF, FCP with UICC characteristics and PIN status
    2F00 EF.DIR    linear fixed, SFI 1E: application templates (records padded with FF)
    2FE2 EF.ICCID  transparent, SFI 02, 10 bytes: the ICCID of the enabled profile

EF.ICCID exists only while its content callable returns bytes: without an enabled profile
there is no ICCID, and tools get ``6A82`` as for any missing file. EF.DIR always exists; with
no application templates it holds one unused (all ``FF``) record, like a real card's spare
records. Access conditions are given in compact form (``8C``): READ always, nothing else
(this card has no EF.ARR to reference). PINs are disabled.

Only the MF is a DF, so every file is reachable by FID from anywhere and "path from the
current DF" (P1=09) starts at the MF.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .apdu import SW_FILE_NOT_FOUND, SW_INCORRECT_P1P2, SW_WRONG_LENGTH, StatusWordError


class FileType(enum.Enum):
    """The file structures this file system has."""

    DF = "df"
    TRANSPARENT = "transparent"
    LINEAR_FIXED = "linear_fixed"


@dataclass(frozen=True)
class File:
    """One file: its identity only. Content lives in :class:`FileSystem`."""

    fid: int
    name: str
    type: FileType
    sfi: int | None = None

    @property
    def is_ef(self) -> bool:
        """Whether this is an elementary file."""
        return self.type is not FileType.DF


MF = File(0x3F00, "MF", FileType.DF)
EF_DIR = File(0x2F00, "EF.DIR", FileType.LINEAR_FIXED, sfi=0x1E)
EF_ICCID = File(0x2FE2, "EF.ICCID", FileType.TRANSPARENT, sfi=0x02)

_CHILDREN_OF_MF = {EF_DIR.fid: EF_DIR, EF_ICCID.fid: EF_ICCID}
_BY_SFI = {EF_DIR.sfi: EF_DIR, EF_ICCID.sfi: EF_ICCID}

# Shortest EF.DIR record: room for a typical application template (61 { 4F AID, 50 label }).
_MIN_DIR_RECORD = 32


def _tlv(tag: int, value: bytes) -> bytes:
    # FCP objects are all one-byte tags with short values.
    return bytes((tag, len(value))) + value


_LCSI_OPERATIONAL_ACTIVATED = _tlv(0x8A, b"\x05")
# Compact security attributes: AM byte 01 (READ) with SC byte 00 (always); others never.
_SECURITY_EF = _tlv(0x8C, b"\x01\x00")
# For a DF, AM byte 00: no administrative operation is allowed (SELECT always is).
_SECURITY_DF = _tlv(0x8C, b"\x00")

_MF_FCP = _tlv(
    0x62,
    _tlv(0x82, b"\x78\x21")  # DF, shareable; data coding byte 21
    + _tlv(0x83, b"\x3f\x00")
    + _tlv(
        0xA5,
        _tlv(0x80, b"\x71")  # UICC characteristics, as on common UICCs (clock stop allowed)
        + _tlv(0x87, b"\x01"),  # supported system commands: TERMINAL CAPABILITY
    )
    + _LCSI_OPERATIONAL_ACTIVATED
    + _SECURITY_DF
    # PIN status template: PS_DO 00 (PIN1 disabled), key reference 01 (PIN1).
    + _tlv(0xC6, _tlv(0x90, b"\x00") + _tlv(0x83, b"\x01")),
)


def _ef_fcp(file: File, descriptor: bytes, size: int) -> bytes:
    assert file.sfi is not None
    return _tlv(
        0x62,
        _tlv(0x82, descriptor)
        + _tlv(0x83, file.fid.to_bytes(2, "big"))
        + _LCSI_OPERATIONAL_ACTIVATED
        + _SECURITY_EF
        + _tlv(0x80, size.to_bytes(2, "big"))
        + _tlv(0x88, bytes((file.sfi << 3,))),
    )


class FileSystem:
    """The UICC file system of the card: MF, EF.DIR and EF.ICCID.

    ``iccid`` returns the 10 bytes of EF.ICCID (BCD, nibble-swapped, as stored on the card)
    or ``None`` when there is none (no enabled profile); ``dir_records`` returns the EF.DIR
    application templates (``61 ...``). Both are called on every access, so the files follow
    the card's state without being told.
    """

    def __init__(
        self,
        iccid: Callable[[], bytes | None] | None = None,
        dir_records: Callable[[], Sequence[bytes]] | None = None,
    ) -> None:
        self._iccid = iccid
        self._dir_records = dir_records

    @property
    def mf(self) -> File:
        """The master file, selected on the basic channel after reset."""
        return MF

    # -- selection --------------------------------------------------------------------------

    def select(self, p1: int, data: bytes) -> File:
        """Resolve SELECT by file identifier (P1=00) or by path (P1=08 from the MF, P1=09
        from the current DF, which is always the MF here).

        Raises :class:`StatusWordError`: ``6A82`` for a missing file, ``6700`` for a data
        field of the wrong length, ``6A86`` for other P1 values.
        """
        if p1 == 0x00:
            if not data:
                return MF  # ISO: P1-P2 00 00 without data selects the MF
            if len(data) != 2:
                raise StatusWordError(SW_WRONG_LENGTH)
            fid = (data[0] << 8) | data[1]
            found = MF if fid == 0x3F00 else _CHILDREN_OF_MF.get(fid)
            return self._present(found)
        if p1 in (0x08, 0x09):
            if not data or len(data) & 1:
                raise StatusWordError(SW_WRONG_LENGTH)
            node = MF
            for i in range(0, len(data), 2):
                if node is not MF:  # an EF has no children
                    raise StatusWordError(SW_FILE_NOT_FOUND)
                node = self._present(_CHILDREN_OF_MF.get((data[i] << 8) | data[i + 1]))
            return node
        raise StatusWordError(SW_INCORRECT_P1P2)

    def by_sfi(self, sfi: int) -> File:
        """The EF with short file identifier ``sfi`` in the MF (``6A82`` if none)."""
        return self._present(_BY_SFI.get(sfi))

    def _present(self, file: File | None) -> File:
        if file is None or (file is EF_ICCID and self._iccid_content() is None):
            raise StatusWordError(SW_FILE_NOT_FOUND)
        return file

    # -- content ----------------------------------------------------------------------------

    def fcp(self, file: File) -> bytes:
        """The FCP template (``62 ...``) returned when ``file`` is selected."""
        if file is MF:
            return _MF_FCP
        if file.type is FileType.TRANSPARENT:
            return _ef_fcp(file, b"\x41\x21", len(self.read_binary(file)))
        records = self.read_records(file)
        length = len(records[0])
        descriptor = b"\x42\x21" + length.to_bytes(2, "big") + bytes((len(records),))
        return _ef_fcp(file, descriptor, length * len(records))

    def read_binary(self, file: File) -> bytes:
        """The content of a transparent EF (``6A82`` if it has disappeared meanwhile)."""
        content = self._iccid_content() if file is EF_ICCID else None
        if content is None:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        return content

    def read_records(self, file: File) -> list[bytes]:
        """The records of a linear fixed EF, all of the same length (at least one)."""
        if file is not EF_DIR:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        templates = [bytes(r) for r in self._dir_records()] if self._dir_records else []
        length = max([_MIN_DIR_RECORD, *map(len, templates)])
        # At most 254 records: the descriptor holds the count in one byte.
        records = [t.ljust(length, b"\xff") for t in templates[:254]]
        return records or [b"\xff" * length]

    def _iccid_content(self) -> bytes | None:
        if self._iccid is None:
            return None
        content = self._iccid()
        return None if content is None else bytes(content)
