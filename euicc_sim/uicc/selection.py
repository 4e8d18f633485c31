"""Selection on one logical channel (ETSI TS 102 221 §8.4, §8.5, §11.1.1) as functions.

A channel's :class:`ChannelState` holds its current DF (or ADF), EF, application (the ADF
last selected) and record; the functions resolve a SELECT or a record reference against a
profile's tree and raise :class:`~euicc_sim.apdu.StatusWordError` as the standard says.
"""

from __future__ import annotations

from ..apdu import StatusWordError
from .files import Node
from .image import ProfileImage
from .templates import Structure

SW_WRONG_LENGTH = 0x6700
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_INCORRECT_P1P2 = 0x6A86


class ChannelState:
    """Selection state of one logical channel (TS 102 221 §8.5)."""

    __slots__ = ("adf", "df", "ef", "record")

    def __init__(self, df: Node, adf: Node | None = None, ef: Node | None = None) -> None:
        self.df = df
        self.adf = adf
        self.ef = ef
        self.record = 0  # current record number, 0: none

    def copy(self) -> ChannelState:
        """The same selection (a channel opened from a non-basic channel, ISO 7816-4 §7.1.2)."""
        new = ChannelState(self.df, self.adf, self.ef)
        new.record = self.record
        return new


def make_current(ch: ChannelState, node: Node) -> None:
    """Make ``node`` the channel's current file (and its DF, ADF) after a SELECT."""
    if node.is_df:
        ch.df, ch.ef = node, None
    else:
        assert node.parent is not None
        ch.df, ch.ef = node.parent, node
    adf = node.adf
    if adf is not None:
        ch.adf = adf
    ch.record = 0


def select_fid(image: ProfileImage, ch: ChannelState, data: bytes) -> Node:
    """SELECT by file identifier (P1 ``00``, TS 102 221 §8.5.1 / §11.1.1)."""
    if not data:
        return image.mf
    if len(data) != 2:
        raise StatusWordError(SW_WRONG_LENGTH)
    fid = int.from_bytes(data, "big")
    mf = image.mf
    if fid == 0x3F00:
        return mf
    if fid == 0x7FFF:
        if ch.adf is None:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        return ch.adf
    current = ch.df
    if not current.is_adf and current.fid == fid:
        return current
    found = current.child(fid)
    if found is not None:
        return found
    parent = current.parent
    if parent is not None:
        if not parent.is_adf and parent.fid == fid:
            return parent
        found = parent.child(fid)
        if found is not None:
            return found
    raise StatusWordError(SW_FILE_NOT_FOUND)


def select_path(image: ProfileImage, ch: ChannelState, data: bytes, *, from_mf: bool) -> Node:
    """SELECT by path from the MF (P1 ``08``) or from the current DF (``09``)."""
    if not data or len(data) % 2:
        raise StatusWordError(SW_WRONG_LENGTH)
    node = image.mf if from_mf else ch.df
    for i in range(0, len(data), 2):
        fid = int.from_bytes(data[i : i + 2], "big")
        if not node.is_df:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        if fid == 0x7FFF and i == 0:
            if ch.adf is None:
                raise StatusWordError(SW_FILE_NOT_FOUND)
            node = ch.adf
            continue
        if fid == 0x3F00 and i == 0 and from_mf:
            raise StatusWordError(SW_FILE_NOT_FOUND)  # the path excludes the MF
        found = node.child(fid)
        if found is None:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        node = found
    return node


def select_aid(image: ProfileImage, ch: ChannelState, aid: bytes, p2: int) -> Node | None:
    """SELECT by DF name (P1 ``04``): a full or right-truncated AID, P2 occurrence and
    session control; None after an application termination."""
    if not 1 <= len(aid) <= 16:
        raise StatusWordError(SW_WRONG_LENGTH)
    matches = [a for a in image.adfs if a.df_name and a.df_name.startswith(aid)]
    if not matches:
        raise StatusWordError(SW_FILE_NOT_FOUND)
    if p2 & 0x60 == 0x40:  # termination of the application session (§11.1.1.2)
        if ch.adf is None or ch.adf not in matches:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        ch.adf, ch.df, ch.ef, ch.record = None, image.mf, None, 0
        return None
    if p2 & 0x60:
        raise StatusWordError(SW_INCORRECT_P1P2)
    occurrence = p2 & 0x03
    if occurrence == 0x00:
        return matches[0]
    if occurrence == 0x01:
        return matches[-1]
    index = matches.index(ch.adf) if ch.adf in matches else None
    if occurrence == 0x02:  # next
        index = 0 if index is None else index + 1
    else:  # previous
        index = len(matches) - 1 if index is None else index - 1
    if not 0 <= index < len(matches):
        raise StatusWordError(SW_FILE_NOT_FOUND)
    return matches[index]


def record_number(ch: ChannelState, node: Node, p1: int, mode: int) -> int:
    """The record a READ/UPDATE RECORD addresses (mode: P2 b3-b1, TS 102 221 §11.1.5)."""
    count = node.content_node.record_count
    cyclic = node.content_node.structure is Structure.CYCLIC
    if mode == 0x04:  # absolute / current
        number = p1 or ch.record
        if not 1 <= number <= count:
            raise StatusWordError(SW_RECORD_NOT_FOUND)
        return number
    if p1:
        raise StatusWordError(SW_INCORRECT_P1P2)
    if mode == 0x02:  # next
        number = 1 if ch.record == 0 else ch.record + 1
        if number > count:
            if not cyclic:
                raise StatusWordError(SW_RECORD_NOT_FOUND)
            number = 1
        return number
    if mode == 0x03:  # previous
        number = count if ch.record == 0 else ch.record - 1
        if number < 1:
            if not cyclic:
                raise StatusWordError(SW_RECORD_NOT_FOUND)
            number = count
        return number
    raise StatusWordError(SW_INCORRECT_P1P2)
