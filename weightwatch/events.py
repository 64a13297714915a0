"""TensorBoard event files: the TFRecord framing and a small writer.

An event file is a sequence of records, each framed as::

    uint64  length              (little endian)
    uint32  masked_crc32c(length bytes)
    bytes   data[length]        (a serialized ``tensorboard.Event`` proto)
    uint32  masked_crc32c(data)

The protos come from the ``tensorboard`` package (no TensorFlow needed) and the
checksums from the native ``crc32c`` package: tensorboard's own writer uses a
pure-Python CRC that runs at a few MB/s, too slow for histogram-heavy logs.

:class:`EventFileWriter` writes on the calling thread; :class:`BackgroundWriter`
builds, serialises, writes and fsyncs each log's batch of events on a thread
of its own, one batch in flight at most, so the training thread waits only
for the maths and a crash loses at most the log in flight.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Sequence
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
        except OSError as exc:  # keep the real error (no such directory, not a directory, disk full, ...)
            raise _same_error(exc, f"weightwatch cannot write event files to log_dir {str(self.log_dir)!r}: "
                                   f"{exc.strerror or exc}. Pass a log_dir you can write to.") from exc
        self._closed = False
        header = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        self.write(header)
        self.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def present(self) -> bool:
        """Whether the event file is still there (False once its directory was deleted)."""
        return self.path.exists()

    def write(self, event: event_pb2.Event) -> None:
        self.write_many([event])

    def write_many(self, events: Sequence[event_pb2.Event]) -> None:
        """Append ``events`` in one write call (buffered; see :meth:`flush`)."""
        if self._closed:
            raise RuntimeError(f"event file {str(self.path)!r} is already closed")
        self._pending.extend(frame_record(event.SerializeToString()) for event in events)

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
            try:
                os.ftruncate(self._file.fileno(), self._committed)
                os.lseek(self._file.fileno(), self._committed, os.SEEK_SET)
            except OSError:  # not a regular file any more (or gone): the write's own error is the one to see
                pass
            raise
        self._committed = self._file.tell()

    def sync(self) -> None:
        """Flush and fsync: durable even if the machine goes down."""
        self.flush()
        if not self._closed:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._file.close()
            self._closed = True


def _same_error(exc: OSError, message: str) -> OSError:
    """An error of ``exc``'s own type and errno (ENOSPC stays a disk-full OSError,
    ENOENT a FileNotFoundError) with weightwatch's ``message``."""
    try:
        return type(exc)(exc.errno, message) if exc.errno is not None else type(exc)(message)
    except TypeError:  # an OSError subclass with another constructor
        return OSError(exc.errno, message)


#: Seconds between two fsyncs of the background writer (close() always fsyncs).
SYNC_EVERY_S = 1.0
#: Builds one batch of events; called on the writer thread.
BatchJob = Callable[[], Sequence[event_pb2.Event]]


class BackgroundWriter:
    """Writes batches of events to an :class:`EventFileWriter` on a thread of its own.

    :meth:`submit` hands over a job that builds one log call's events (the
    protos are built and serialised on the writer thread too); the thread
    writes them in one call and flushes them to the OS, then fsyncs the file
    (durable against the machine going down) when the last fsync is
    :data:`SYNC_EVERY_S` old, before it takes the next batch.
    The queue holds one batch: ``submit`` first waits until the previous
    batch is in the OS, so when a log call returns every earlier one survives
    a crash of the process (even SIGKILL), which loses at most the batch in
    flight. A small batch (``inline=True``: a log call's scalars only) is
    written on the calling thread instead when nothing is in flight, no
    fsync is due and the file is local: serialising a few scalars costs less
    than waking the thread, and a watcher logging the loss at every step would
    otherwise wake a third thread at every step, which on a machine whose
    cores all train stalls the training threads (see benchmarks/training.py).
    An error on the thread (disk
    full, ...) is raised, with its own type and errno, by the next
    :meth:`submit`, :meth:`wait` or :meth:`close`. At interpreter exit pending
    batches are written (atexit); :meth:`close` drains, then closes the file.
    """

    def __init__(self, writer: EventFileWriter) -> None:
        self.writer = writer
        self._queue: queue.Queue[BatchJob | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._synced = -float("inf")
        self._writing = threading.Lock()  # the file: the thread's batch or an inline one, never both
        self._thread = threading.Thread(target=self._run, name=f"weightwatch-writer {writer.path.name}", daemon=True)
        self._thread.start()
        # at interpreter exit (weakref.finalize runs then), write what is pending
        self._finalizer = weakref.finalize(self, _drain_at_exit, self._queue, self._thread)

    @property
    def closed(self) -> bool:
        return self.writer.closed

    def submit(self, job: BatchJob, *, inline: bool = False) -> None:
        """Queue one batch; returns once the previous batch is in the OS.

        When the previous batch failed, this one is still queued (the disk may
        have room again) and the previous batch's error is raised. With
        ``inline``, the batch is written here, on the calling thread, when the
        writer is idle, no fsync is due and the file is local (then this batch
        too is in the OS on return; a write error is raised at once, naming
        this call as lost).
        """
        try:
            self.wait()
        except BaseException:
            if not self.writer.closed:
                self._queue.put(job)
            raise
        if self.writer.closed:
            raise RuntimeError(f"event file {str(self.writer.path)!r} is already closed")
        # local files only: a flush to object storage is an upload, never for the training thread
        if inline and isinstance(self.writer, EventFileWriter) and time.monotonic() - self._synced < SYNC_EVERY_S:
            with self._writing:
                if not self._queue.unfinished_tasks:  # another thread's batch may have come in
                    try:
                        self.writer.write_many(job())
                        self.writer.flush()
                    except OSError as exc:
                        raise _same_error(exc, f"weightwatch could not write to the event file "
                                               f"{str(self.writer.path)!r}: {exc.strerror or exc}. This log call "
                                               "is lost; free the disk or pass another log_dir.") from exc
                    return
        self._queue.put(job)

    def wait(self) -> None:
        """Block until every submitted batch is written to the OS; raise the thread's error if any."""
        self._queue.join()
        if self._error is not None:
            exc, self._error = self._error, None
            if isinstance(exc, OSError):
                raise _same_error(exc, f"weightwatch could not write to the event file {str(self.writer.path)!r}: "
                                       f"{exc.strerror or exc}. The log call before this one is lost; "
                                       "free the disk or pass another log_dir.") from exc
            raise exc

    def close(self) -> None:
        """Write what is pending, stop the thread, fsync and close the file. Idempotent."""
        if self.writer.closed:
            return
        try:
            self.wait()
        finally:
            self._queue.put(None)
            self._thread.join()
            self._finalizer.detach()
            self.writer.close()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.task_done()
                return
            written = False
            try:
                if self._error is None:  # after a failure, drop batches until the caller has seen it
                    with self._writing:
                        self.writer.write_many(job())
                        self.writer.flush()  # in the OS now: a crash of the process no longer loses it
                    written = True
                # durable against the machine going down too, at most every SYNC_EVERY_S: a log
                # call per training step must not wait for the disk at every step
                if written and time.monotonic() - self._synced >= SYNC_EVERY_S:
                    with self._writing:
                        self.writer.sync()
                    self._synced = time.monotonic()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()  # after the fsync: wait() then covers it, and the next submit sees it


def _drain_at_exit(pending: queue.Queue, thread: threading.Thread) -> None:
    """At interpreter exit, let the writer thread finish what was submitted (not the file: close() does)."""
    if thread.is_alive():
        pending.join()
