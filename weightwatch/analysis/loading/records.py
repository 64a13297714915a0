"""TFRecord framing, read back: where each record's bytes are, checksums verified.

The layout is documented in :mod:`weightwatch.events`. Reading is strict about
checksums and forgiving about endings: a record whose data fails its CRC is
skipped (its length was vouched for by the header's CRC), a header that fails
its CRC stops the file there (nothing after it can be trusted), and an
incomplete record at the end (a crash mid-write, or a run still writing) is
left for the next read. Everything before the problem is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import crc32c as _crc32c
import numpy as np

from weightwatch.events import MASK_DELTA

_HEADER = 12  # uint64 length, uint32 masked CRC of the 8 length bytes
_FOOTER = 4  # uint32 masked CRC of the data


@dataclass
class Framing:
    """The records found in a buffer.

    Attributes:
        starts: (n,) int64, offset of each good record's data in the buffer.
        lengths: (n,) int64, its length in bytes.
        end: offset just past the last record read (good or skipped); reading
            the file again from ``base + end`` resumes where this read stopped.
        skipped: records skipped for a bad data checksum (byte offsets are
            absolute: ``base + ...``); true however the file grows.
        stop: why reading stopped before the end of the buffer (an incomplete
            or corrupt record at ``end``), or None.
        truncated: the buffer ends inside a record.
    """

    starts: np.ndarray
    lengths: np.ndarray
    end: int
    skipped: list[str] = field(default_factory=list)
    stop: str | None = None
    truncated: bool = False


def masked(crc: np.ndarray) -> np.ndarray:
    """:func:`weightwatch.events.masked_crc32c`'s masking, on an array of raw CRC32C values.

    >>> from weightwatch.events import masked_crc32c
    >>> import crc32c
    >>> int(masked(np.array([crc32c.crc32c(b"abc")]))[0]) == masked_crc32c(b"abc")
    True
    """
    c = np.asarray(crc, dtype=np.uint64)
    return (((c >> np.uint64(15)) | (c << np.uint64(17))) + np.uint64(MASK_DELTA)) & np.uint64(0xFFFFFFFF)


def _stored_u32(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    if at.size == 0:
        return np.zeros(0, np.uint64)
    return buf[at[:, None] + np.arange(4)].view("<u4").reshape(-1).astype(np.uint64)


def frame(buf: bytes, base: int = 0) -> Framing:
    """Find and verify the records of a TFRecord byte string.

    Args:
        buf: the bytes of an event file from offset ``base`` on; ``base`` only
            shifts the byte offsets quoted in problem messages.

    The walk trusts each length, then checks every header CRC at once: records
    from the first bad header on are dropped (their framing is unknown).

    >>> from weightwatch.events import frame_record
    >>> f = frame(frame_record(b"abc") + frame_record(b"de")[:-1])
    >>> f.starts.tolist(), f.lengths.tolist(), f.end, f.truncated
    ([12], [3], 19, True)
    """
    from ._wirejit import frames

    view = memoryview(buf)
    n = len(view)
    arr = np.frombuffer(buf, dtype=np.uint8)
    cap = n // 16 + 1
    heads_arr, lengths_arr = np.empty(cap, np.int64), np.empty(cap, np.int64)
    count, pos = frames(arr, heads_arr, lengths_arr)
    heads, lengths = heads_arr[:count].tolist(), lengths_arr[:count].tolist()
    crc = _crc32c.crc32c
    head_crc = [crc(view[h:h + 8]) for h in heads]
    data_crc = [crc(view[h + _HEADER:h + _HEADER + n_]) for h, n_ in zip(heads, lengths)]
    truncated = pos < n
    probe = truncated and n - pos >= _HEADER
    if probe:  # check the incomplete record's header too: a wrong one is corruption, not a crash
        heads.append(pos)
        lengths.append(0)
        head_crc.append(crc(view[pos:pos + 8]))
        data_crc.append(0)
    at = np.array(heads, dtype=np.int64)
    length_arr = np.array(lengths, dtype=np.int64)
    header_ok = masked(np.array(head_crc, dtype=np.uint64)) == _stored_u32(arr, at + 8)
    stop = None
    if not header_ok.all():
        bad = int(np.argmin(header_ok))
        pos, truncated = int(at[bad]), False
        at, length_arr, data_crc = at[:bad], length_arr[:bad], data_crc[:bad]
        stop = (f"corrupt record header at byte {base + pos} (checksum mismatch): stopped reading the file "
                "there, kept the records before it")
    elif truncated:
        if probe:
            at, length_arr, data_crc = at[:-1], length_arr[:-1], data_crc[:-1]
        stop = (f"incomplete record at byte {base + pos} ({n - pos} bytes): the run crashed mid-write or is "
                "still writing; kept everything before it")
    data_ok = masked(np.array(data_crc, dtype=np.uint64)) == _stored_u32(arr, at + _HEADER + length_arr)
    skipped = [f"record at byte {base + int(a)} fails its data checksum: skipped it" for a in at[~data_ok]]
    return Framing(at[data_ok] + _HEADER, length_arr[data_ok], pos, skipped, stop, truncated)
