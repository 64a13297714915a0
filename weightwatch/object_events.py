"""Event files on object storage (s3://, gs://, az://, ... any fsspec URL), where objects cannot be appended to.

:class:`ObjectEventWriter` is a drop-in for :class:`weightwatch.events.EventFileWriter`
with a run directory given as a :class:`weightwatch.storage.RemoteDir`. Like
TensorBoard's own writers on those stores, it keeps the records of the object
being written in memory and each :meth:`~ObjectEventWriter.flush` uploads
the object whole, as one new version (one PUT): a reader, TensorBoard
included, sees the previous complete version or this one, never a torn record,
and a kill loses at most what was not flushed yet. An upload that fails keeps
everything (the next flush uploads it again), so a network outage costs no
record that was written before it.

Uploading an object whole at every flush costs its size each time; once an
object holds :data:`OBJECT_BYTES`, the next records go to a new object whose
name extends the last one's (``<name>.part0001``, ``.part0002``, ...), so the
objects sort in the order they were written, the way TensorBoard reads a run's
event files, and one upload is never more than that size plus one log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tensorboard.compat.proto import event_pb2, summary_pb2

from .events import event_file_name, frame_record
from .storage import RemoteDir, _remote

#: An object is closed and the next one started once it holds this many bytes.
OBJECT_BYTES = 8 << 20


class ObjectEventWriter:
    """Writes ``Event`` protos to objects in ``log_dir``, each flush uploading the current object whole.

    The first object (and its ``file_version`` header) is uploaded at
    construction, so a bucket that cannot be written fails here. Not thread
    safe by design, like :class:`~weightwatch.events.EventFileWriter`.
    """

    def __init__(self, log_dir: RemoteDir, object_bytes: int | None = None) -> None:
        self.log_dir = log_dir
        self.object_bytes = int(object_bytes or OBJECT_BYTES)
        self._fs, self._dir = log_dir.fs()
        self._base = event_file_name()
        self._part = 0
        self.path = log_dir / self._base
        self._data = bytearray()  # every record of the current object
        self._uploaded = -1  # len(self._data) at the last upload that succeeded
        self._closed = False
        try:
            self._new_object()
            self.flush()
        except OSError as exc:
            raise type(exc)(f"weightwatch cannot write event files to log_dir {str(log_dir)!r}: {exc}. "
                            "Check the URL, that the bucket exists and that these credentials may write "
                            "to it.") from exc

    @property
    def closed(self) -> bool:
        return self._closed

    def present(self) -> bool:
        """Always True: every flush uploads the object whole, so a deleted one comes back at the next."""
        return True

    def write(self, event: event_pb2.Event) -> None:
        self.write_many([event])

    def write_many(self, events: Sequence[event_pb2.Event]) -> None:
        """Add ``events`` to the current object (uploaded by the next :meth:`flush`)."""
        if self._closed:
            raise RuntimeError(f"event file {str(self.path)!r} is already closed")
        for event in events:
            self._data += frame_record(event.SerializeToString())

    def write_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float | None = None) -> None:
        self.write(event_pb2.Event(wall_time=time.time() if wall_time is None else wall_time, step=int(step),
                                   summary=summary))

    def flush(self) -> None:
        """Upload the current object whole when it changed; start the next one when it is full.

        Raises OSError when the upload fails; nothing is dropped (the next flush tries again).
        """
        if self._closed or len(self._data) == self._uploaded:
            return
        data = bytes(self._data)
        key = f"{self._dir.rstrip('/')}/{self.path.name}"
        _remote(lambda: self._fs.pipe_file(key, data), str(self.path))
        self._uploaded = len(data)
        if len(data) >= self.object_bytes:
            self._part += 1
            self.path = self.log_dir / f"{self._base}.part{self._part:04d}"
            self._new_object()

    def sync(self) -> None:
        """Same as :meth:`flush`: an uploaded object is as durable as the store makes it."""
        self.flush()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True

    def _new_object(self) -> None:
        """Start an object with its own ``file_version`` header (each is a complete event file)."""
        self._data = bytearray()
        self._uploaded = -1
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
