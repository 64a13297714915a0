"""The compiled half of :mod:`weightwatch.analysis.loading.wire` (numba, cached on disk).

Module-level functions, imported on first use: numba can only cache a
compiled function that calls other compiled functions when they are globals.
"""

from __future__ import annotations

import numpy as np

from .jitcache import ensure_writable_cache

ensure_writable_cache(__file__)  # before numba compiles anything here

from numba import njit  # noqa: E402


@njit(cache=True, nogil=True)
def varint(buf, pos, end):  # pragma: no cover - compiled
    """(value, new pos); new pos -1 when the varint runs past ``end``."""
    result = np.uint64(0)
    shift = np.uint64(0)
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += np.uint64(7)
        if shift > np.uint64(63):
            break
    return result, -1


@njit(cache=True, nogil=True)
def skip(buf, pos, end, wire):  # pragma: no cover - compiled
    """Position after a field's payload of this wire type; -1 when malformed."""
    if wire == 0:
        _, pos = varint(buf, pos, end)
        return pos
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        n, pos = varint(buf, pos, end)
        if pos < 0:
            return -1
        pos += np.int64(n)
    else:
        return -1
    return pos if pos <= end else -1


@njit(cache=True, nogil=True)
def fnv1a(buf, start, n):  # pragma: no cover - compiled
    h = np.uint64(14695981039346656037)
    for i in range(start, start + n):
        h ^= np.uint64(buf[i])
        h *= np.uint64(1099511628211)
    return h


@njit(cache=True, nogil=True)
def key(buf, pos, end):  # pragma: no cover - compiled
    """(field number, wire type, new pos) of the field starting at ``pos``; pos -1 when malformed."""
    k, pos = varint(buf, pos, end)
    return np.int64(k >> np.uint64(3)), np.int64(k & np.uint64(7)), pos


@njit(cache=True, nogil=True)
def span(buf, pos, end):  # pragma: no cover - compiled
    """(start, stop) of the length-delimited payload at ``pos``; (-1, -1) when it runs past ``end``."""
    n, pos = varint(buf, pos, end)
    if pos < 0 or pos + np.int64(n) > end:
        return np.int64(-1), np.int64(-1)
    return pos, pos + np.int64(n)


@njit(cache=True, nogil=True)
def histo(buf, pos, end):  # pragma: no cover - compiled
    """HistogramProto: (min, max, limits start, limits count, buckets start, buckets count, status).

    status: 0 ok, 1 needs the fallback (unpacked repeated field), 2 malformed.
    """
    lo = 0.0
    hi = 0.0
    ls = np.int64(0)
    ln = np.int64(0)
    bs = np.int64(0)
    bn = np.int64(0)
    while pos < end:
        fnum, wire, pos = key(buf, pos, end)
        if pos < 0:
            return lo, hi, ls, ln, bs, bn, 2
        if (fnum == 1 or fnum == 2) and wire == 1:
            if pos + 8 > end:
                return lo, hi, ls, ln, bs, bn, 2
            v = buf[pos:pos + 8].view(np.float64)[0]
            if fnum == 1:
                lo = v
            else:
                hi = v
            pos += 8
        elif (fnum == 6 or fnum == 7) and wire == 2:
            a, pos = span(buf, pos, end)
            if a < 0 or (pos - a) % 8 != 0:
                return lo, hi, ls, ln, bs, bn, 2
            if fnum == 6:
                ls, ln = a, (pos - a) // 8
            else:
                bs, bn = a, (pos - a) // 8
        elif (fnum == 6 or fnum == 7) and wire == 1:
            return lo, hi, ls, ln, bs, bn, 1
        else:
            pos = skip(buf, pos, end, wire)
            if pos < 0:
                return lo, hi, ls, ln, bs, bn, 2
    return lo, hi, ls, ln, bs, bn, 0


@njit(cache=True, nogil=True)
def event(buf, pos, end):  # pragma: no cover - compiled
    """Event: (step, summary start, summary stop, status); status 1 for several
    summary fields (protobuf merges them: left to the fallback), 2 malformed."""
    step = np.int64(0)
    a = np.int64(-1)
    b = np.int64(-1)
    status = 0
    while pos < end:
        fnum, wire, pos = key(buf, pos, end)
        if pos < 0:
            return step, a, b, 2
        if fnum == 2 and wire == 0:
            v, pos = varint(buf, pos, end)
            step = np.int64(v)
        elif fnum == 5 and wire == 2:
            if a >= 0:
                status = 1
            a, pos = span(buf, pos, end)
            b = pos
        else:
            pos = skip(buf, pos, end, wire)
        if pos < 0:
            return step, a, b, 2
    return step, a, b, status


@njit(cache=True, nogil=True)
def value(buf, pos, end):  # pragma: no cover - compiled
    """Summary.Value: (tag start, tag length, kind, simple value, histo start, histo stop, status).

    kind: 0 nothing decodable, 1 simple_value, 2 histo, 3 tensor (the fallback's).
    """
    tag_start = np.int64(-1)
    tag_stop = np.int64(-1)
    kind = 0
    fval = 0.0
    hs = np.int64(-1)
    he = np.int64(-1)
    while pos < end:
        fnum, wire, pos = key(buf, pos, end)
        if pos < 0:
            return tag_start, np.int64(0), kind, fval, hs, he, 2
        if fnum == 1 and wire == 2:
            tag_start, pos = span(buf, pos, end)
            tag_stop = pos
        elif fnum == 2 and wire == 5:
            if pos + 4 > end:
                return tag_start, np.int64(0), kind, fval, hs, he, 2
            fval = np.float64(buf[pos:pos + 4].view(np.float32)[0])
            kind = 1
            pos += 4
        elif fnum == 5 and wire == 2:
            hs, pos = span(buf, pos, end)
            he = pos
            kind = 2
        else:
            if fnum == 8:
                kind = 3
            pos = skip(buf, pos, end, wire)
        if pos < 0:
            return tag_start, np.int64(0), kind, fval, hs, he, 2
    return tag_start, tag_stop - tag_start, kind, fval, hs, he, 0


@njit(cache=True, nogil=True)
def walk(buf, starts, lengths, want_scalars, want_histos, store,  # pragma: no cover - compiled
         s_rec, s_step, s_value, s_hash, s_tag,
         h_rec, h_step, h_hash, h_tag, h_min, h_max, h_lims, h_bkts,
         flags):
    """Decode every record; with ``store`` False only count.

    Returns (scalars, histograms, full): with ``store``, ``full`` is True when
    the arrays were too small (decoding stopped; count first, then store). ``flags[r]``: 0 decoded, 1 needs the
    fallback, 2 malformed (a record's rows are kept only when it is 0).
    ``s_tag`` / ``h_tag``: (n, 2) tag start, length; ``h_lims`` / ``h_bkts``:
    (n, 2) start, count of the packed doubles.
    """
    ns = 0
    nh = 0
    for r in range(starts.shape[0]):
        ns0 = ns
        nh0 = nh
        step, pos, sum_end, status = event(buf, starts[r], starts[r] + lengths[r])
        while status == 0 and 0 <= pos < sum_end:
            fnum, wire, pos = key(buf, pos, sum_end)
            if pos < 0:
                status = 2
                break
            if not (fnum == 1 and wire == 2):  # Summary: only its values
                pos = skip(buf, pos, sum_end, wire)
                status = 2 if pos < 0 else 0
                continue
            a, pos = span(buf, pos, sum_end)
            if a < 0:
                status = 2
                break
            tag_start, tag_len, kind, fval, hs, he, status = value(buf, a, pos)
            if status != 0:
                break
            if kind == 3:
                status = 1
            elif kind == 1 and want_scalars:
                if store and ns >= s_rec.shape[0]:
                    return ns, nh, True
                if store:
                    s_rec[ns] = r
                    s_step[ns] = step
                    s_value[ns] = fval
                    s_hash[ns] = fnv1a(buf, tag_start, tag_len) if tag_start >= 0 else np.uint64(0)
                    s_tag[ns, 0] = tag_start
                    s_tag[ns, 1] = tag_len
                ns += 1
            elif kind == 2 and want_histos:
                lo, hi, ls, ln, bs, bn, status = histo(buf, hs, he)
                if status != 0:
                    break
                if store and nh >= h_rec.shape[0]:
                    return ns, nh, True
                if store:
                    h_rec[nh] = r
                    h_step[nh] = step
                    h_hash[nh] = fnv1a(buf, tag_start, tag_len) if tag_start >= 0 else np.uint64(0)
                    h_tag[nh, 0] = tag_start
                    h_tag[nh, 1] = tag_len
                    h_min[nh] = lo
                    h_max[nh] = hi
                    h_lims[nh, 0] = ls
                    h_lims[nh, 1] = ln
                    h_bkts[nh, 0] = bs
                    h_bkts[nh, 1] = bn
                nh += 1
        if status != 0:  # the fallback (or nobody) decodes this record: drop its partial rows
            ns = ns0
            nh = nh0
        if store:
            flags[r] = status
    return ns, nh, False


@njit(cache=True, nogil=True)
def same_bytes(buf, spans, reps, out):  # pragma: no cover - compiled
    """``out[i]``: whether the bytes at ``spans[i]`` equal those at ``reps[i]`` ((n, 2) start, length)."""
    for i in range(spans.shape[0]):
        a = spans[i, 0]
        b = reps[i, 0]
        n = spans[i, 1]
        ok = n == reps[i, 1]
        if ok and a != b:
            for k in range(n):
                if buf[a + k] != buf[b + k]:
                    ok = False
                    break
        out[i] = ok


@njit(cache=True, nogil=True)
def gather(buf, starts, counts, out):  # pragma: no cover - compiled
    k = 0
    for i in range(starts.shape[0]):
        src = buf[starts[i]:starts[i] + 8 * counts[i]].view(np.float64)
        for j in range(counts[i]):
            out[k] = src[j]
            k += 1


@njit(cache=True, nogil=True)
def frames(buf, heads, lengths):  # pragma: no cover - compiled
    """Walk TFRecord framing trusting each length: fills ``heads`` (record start) and
    ``lengths`` (data length); returns (records, offset where the walk stopped).

    Stops at the first record that does not fit in ``buf`` (or when the arrays
    are full): the caller checks the CRCs and what is left.
    """
    n = buf.shape[0]
    pos = np.int64(0)
    r = 0
    while pos + 12 <= n and r < heads.shape[0]:
        length = np.int64(buf[pos:pos + 8].view(np.uint64)[0])
        if length < 0 or length > n - pos - 16:
            break
        heads[r] = pos
        lengths[r] = length
        r += 1
        pos += 16 + length
    return r, pos
