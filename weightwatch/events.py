"""TensorBoard event files: the TFRecord framing and a small writer.

An event file is a sequence of records, each framed as::

    uint64  length              (little endian)
    uint32  masked_crc32c(length bytes)
    bytes   data[length]        (a serialized ``tensorboard.Event`` proto)
    uint32  masked_crc32c(data)

The protos come from the ``tensorboard`` package (no TensorFlow needed) and the
checksums from the native ``crc32c`` package: tensorboard's own writer uses a
pure-Python CRC that runs at a few MB/s, too slow for histogram-heavy logs.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path

import crc32c as _crc32c
from tensorboard.compat.proto import event_pb2, summary_pb2

#: Added to the rotated CRC32C in TFRecord framing (shared with the loader).
MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """The CRC32C of ``data`` masked the way TFRecord files store it."""
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """Wrap one serialized proto in TFRecord framing (header, data, footer)."""
    header = _LENGTH.pack(len(data))
    return b"".join(
        (header, _CRC.pack(masked_crc32c(header)), data, _CRC.pack(masked_crc32c(data)))
    )


_file_counter = 0
_counter_lock = threading.Lock()


def event_file_name(now: float | None = None) -> str:
    """A name TensorBoard recognises: ``events.out.tfevents.<time>.<host>.<pid>.<n>``.

    The trailing counter keeps two writers opened in the same second by the
    same process from clobbering each other.
    """
    global _file_counter
    with _counter_lock:
        _file_counter += 1
        n = _file_counter
    stamp = int(now if now is not None else time.time())
    return f"events.out.tfevents.{stamp}.{socket.gethostname()}.{os.getpid()}.{n}"


class EventFileWriter:
    """Appends ``Event`` protos to one new event file in ``log_dir``.

    The file is created (and the ``file_version`` header written) at
    construction, so an unwritable directory fails here and not at the first
    log call. Each :meth:`write` call is buffered; :meth:`flush` hands the
    records to the OS, and when that fails (a full disk) cuts the file back to
    its last whole record before raising. Not thread safe by design: one writer per run, one writing thread.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._pending: list[bytes] = []  # framed records not handed to the OS yet
        self._committed = 0  # bytes of the file known to be whole records
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.path = self.log_dir / event_file_name()
            # unbuffered: flush() knows exactly which bytes reached the file
            self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise PermissionError(
                f"weightwatch cannot write event files to log_dir {str(self.log_dir)!r}: "
                f"{exc.strerror or exc}. Pass a log_dir you can write to."
            ) from exc
        self._closed = False
        header = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        self.write(header)
        self.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, event: event_pb2.Event) -> None:
        if self._closed:
            raise RuntimeError(f"event file {str(self.path)!r} is already closed")
        self._pending.append(frame_record(event.SerializeToString()))

    def write_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float | None = None) -> None:
        """Write ``summary`` as one event at ``step``."""
        event = event_pb2.Event(
            wall_time=time.time() if wall_time is None else wall_time, step=int(step), summary=summary
        )
        self.write(event)

    def flush(self) -> None:
        """Hand buffered records to the OS: a crash of the training process then
        loses nothing written. (No fsync per call: it costs milliseconds each
        time and only guards against the whole machine going down; close() does it.)"""
        if self._closed or not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        try:
            while data:
                data = data[self._file.write(data):]
        except OSError:
            # a full disk (or a vanished file system) may leave part of a record: cut the file
            # back to its last whole record, so readers never meet a torn one; this flush's
            # records are dropped and the next flush starts clean
            os.ftruncate(self._file.fileno(), self._committed)
            os.lseek(self._file.fileno(), self._committed, os.SEEK_SET)
            raise
        self._committed = self._file.tell()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._closed = True
