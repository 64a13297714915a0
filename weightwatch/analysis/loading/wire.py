"""Decode ``Event`` protos straight from their bytes, into columns.

TensorBoard's protobuf classes cost a Python object per scalar; a weightwatch
run writes hundreds of scalars per epoch, so the loader walks the protobuf
wire format in a compiled loop instead (numba, cached on disk like the core's
kernels) and returns flat arrays. Only the fields the analysis reads are
decoded (the schema is tensorboard's ``event.proto`` / ``summary.proto``)::

    Event           2 step (varint)   5 summary (Summary)        others skipped
    Summary         1 value (repeated Summary.Value)
    Summary.Value   1 tag (string)    2 simple_value (float)     5 histo (HistogramProto)
                    8 tensor          others skipped
    HistogramProto  1 min (double)    2 max (double)
                    6 bucket_limit (packed double)   7 bucket (packed double)

Tags are identified by a 64-bit FNV-1a hash of their bytes; :mod:`.parse`
checks every tag's bytes against the first tag seen with its hash
(:func:`same_tags`) and names the rows by their bytes when two differ.
Histogram payloads are skipped without decoding when not wanted. Values the
compiled path does not decode (tensor summaries, as written by TensorFlow 2's
``tf.summary``, or unpacked repeated fields) mark their record for
:func:`decode_fallback`, which uses the protobuf classes. A record that is not
a valid Event is reported, never read past its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_kernel = None


def _compile():
    global _kernel
    if _kernel is None:
        from . import _wirejit

        _kernel = (_wirejit.walk, _wirejit.gather, _wirejit.same_bytes)
    return _kernel


@dataclass
class Decoded:
    """Columns decoded from a batch of records (row order = file order).

    Scalars: ``s_rec`` (record index), ``s_step``, ``s_value`` (float64 of the
    stored float32), ``s_hash`` (64-bit FNV-1a of the tag bytes), ``s_tag``
    ((n, 2) start and length of the tag in the buffer). Histograms the same,
    plus ``h_min`` / ``h_max`` and ``h_lims`` / ``h_bkts`` ((n, 2) start and
    count of the packed bucket_limit / bucket doubles). ``flags`` (records,):
    0 decoded, 1 to decode with :func:`decode_fallback`, 2 not a valid Event.
    """

    s_rec: np.ndarray
    s_step: np.ndarray
    s_value: np.ndarray
    s_hash: np.ndarray
    s_tag: np.ndarray
    h_rec: np.ndarray
    h_step: np.ndarray
    h_hash: np.ndarray
    h_tag: np.ndarray
    h_min: np.ndarray
    h_max: np.ndarray
    h_lims: np.ndarray
    h_bkts: np.ndarray
    flags: np.ndarray


def _columns(ns: int, nh: int, records: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty(ns, np.int32), np.empty(ns, np.int64), np.empty(ns, np.float64), np.empty(ns, np.uint64),
        np.empty((ns, 2), np.int64),
        np.empty(nh, np.int32), np.empty(nh, np.int64), np.empty(nh, np.uint64), np.empty((nh, 2), np.int64),
        np.empty(nh, np.float64), np.empty(nh, np.float64), np.empty((nh, 2), np.int64), np.empty((nh, 2), np.int64),
        np.zeros(records, np.int8),
    )


def decode(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, scalars: bool = True,
           histograms: bool = True) -> Decoded:
    """Decode the Event records at ``starts`` / ``lengths`` of ``buf`` (a uint8 array).

    One pass into arrays sized from the byte count (typical summaries need
    far less); when they are too small, a counting pass first, then an exact one.
    """
    walk = _compile()[0]
    nbytes = int(lengths.sum()) if lengths.size else 0
    cols = _columns(nbytes // 16 + 64, nbytes // 64 + 64, len(starts))
    ns, nh, full = walk(buf, starts, lengths, scalars, histograms, True, *cols)
    if full:
        ns, nh, _ = walk(buf, starts, lengths, scalars, histograms, False, *_columns(0, 0, 0))
        cols = _columns(ns, nh, len(starts))
        walk(buf, starts, lengths, scalars, histograms, True, *cols)
    return Decoded(*(c[:ns] for c in cols[:5]), *(c[:nh] for c in cols[5:13]), cols[13])


def gather_f64(buf: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The little-endian doubles at byte offsets ``starts`` of ``buf`` (``counts`` of each), concatenated.

    >>> gather_f64(np.frombuffer(np.array([1.0, 2.0, 3.0]).tobytes(), np.uint8), np.array([16, 0]), np.array([1, 2]))
    array([3., 1., 2.])
    """
    gather = _compile()[1]
    out = np.empty(int(np.sum(counts)), dtype=np.float64)
    gather(buf, np.asarray(starts, np.int64), np.asarray(counts, np.int64), out)
    return out


def same_tags(buf: np.ndarray, spans: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """(n,) bool: whether each tag at ``spans`` ((n, 2) start, length in ``buf``) has the bytes of the
    one at ``reps`` (the first tag seen with its hash): False marks a hash collision.

    >>> buf = np.frombuffer(b"lossacc", np.uint8)
    >>> same_tags(buf, np.array([[0, 4], [4, 3]]), np.array([[0, 4], [0, 4]])).tolist()
    [True, False]
    """
    out = np.empty(spans.shape[0], dtype=np.bool_)
    _compile()[2](buf, np.asarray(spans, np.int64), np.asarray(reps, np.int64), out)
    return out


def warm_up() -> None:
    """Compile (or load the compiled decoder from numba's cache) now, e.g. before forking workers."""
    buf = np.frombuffer(b"\0" * 8, dtype=np.uint8)  # read-only, like the buffers of real files
    decode(buf, np.zeros(0, np.int64), np.zeros(0, np.int64))
    gather_f64(buf, np.zeros(1, np.int64), np.ones(1, np.int64))
    same_tags(buf, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64))


def decode_fallback(data: bytes, plugins: dict[str, str]) -> tuple[int, list[tuple[str, float]],
                                                                   list[tuple[str, np.ndarray, np.ndarray]]]:
    """Decode one record with the protobuf classes: (step, scalars, histograms).

    Handles what the compiled path leaves: tensor summaries (TensorFlow 2
    writes scalars as 0-d float tensors and histograms as (k, 3) tensors of
    left edge, right edge, count) and unusual encodings. ``plugins`` maps tag
    -> plugin name across a file's records (TensorFlow writes a tag's plugin
    metadata with its first value only) and is updated in place. Histograms
    come back as (edges (k + 1,), counts (k,)). Raises ``ValueError`` for
    bytes that are not an Event.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    try:
        event = event_pb2.Event.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"not a valid Event record ({exc})") from None
    scalars: list[tuple[str, float]] = []
    histos: list[tuple[str, np.ndarray, np.ndarray]] = []
    for value in event.summary.value:
        tag = value.tag
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            plugins[tag] = value.metadata.plugin_data.plugin_name
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            scalars.append((tag, float(value.simple_value)))
        elif kind == "histo":
            h = value.histo
            histos.append((tag, *histogram_edges(h.min, h.max, np.array(h.bucket_limit), np.array(h.bucket))))
        elif kind == "tensor":
            plugin = plugins.get(tag)
            try:
                arr = tensor_util.make_ndarray(value.tensor)
            except (TypeError, ValueError):
                continue
            if arr.dtype.kind not in "fiu":
                continue
            if plugin in (None, "scalars") and arr.ndim == 0:
                scalars.append((tag, float(arr)))
            elif plugin == "histograms" and arr.ndim == 2 and arr.shape[1] == 3 and arr.shape[0] > 0:
                arr = arr.astype(np.float64)
                histos.append((tag, np.concatenate([arr[:1, 0], arr[:, 1]]), arr[:, 2]))
    return int(event.step), scalars, histos


def histogram_edges(lo: float, hi: float, limits: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``HistogramProto``'s buckets as (edges (k + 1,), counts (k,)), edges non-decreasing.

    ``bucket_limit`` holds right edges; the left edge of bucket 0 is ``min``, or
    the first limit when that is lower (TensorFlow-style buckets start below
    the data). Right edges beyond ``max`` (the open last bucket, DBL_MAX) are
    clipped to ``max``: no value lies past it.

    >>> histogram_edges(0.5, 2.0, np.array([0.2, 1.0, 1.7e308]), np.array([0.0, 3.0, 4.0]))[0].tolist()
    [0.2, 0.2, 1.0, 2.0]
    """
    limits = np.asarray(limits, dtype=np.float64)
    first = min(lo, limits[0]) if limits.size else lo
    return np.concatenate([[first], np.minimum(limits, hi)]), np.asarray(counts, dtype=np.float64)
