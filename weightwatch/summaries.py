"""Build TensorBoard ``Summary`` protos; writing them is :mod:`weightwatch.events`' job.

Everything here is pure: plain Python / numpy in, protos out.
"""

from __future__ import annotations

import enum

import re
from collections.abc import Iterable, Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import summary_v2 as hparams_v2


def scalars_summary(values: Mapping[str, float]) -> summary_pb2.Summary:
    """One ``Summary`` holding every scalar in ``values`` (tag -> value)."""
    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]
    )


def histogram_value(tag: str, edges: np.ndarray, counts: np.ndarray, total: float | None = None,
                    sum_squares: float | None = None) -> summary_pb2.Summary.Value:
    """A histogram with explicit bins, as TensorBoard's ``HistogramProto``.

    Args:
        edges: shape (k + 1,), increasing bin edges; bin i is [edges[i], edges[i+1]),
            the last bin closed on the right.
        counts: shape (k,), exact integer counts per bin.
        total / sum_squares: sum of the values and of their squares, when known.

    ``HistogramProto`` stores the right edge of each bin (``bucket_limit``) and the
    overall ``min``/``max``; the left edge of bin 0 is ``min``.
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if edges.shape != (counts.shape[0] + 1,):
        raise ValueError(f"histogram {tag!r}: edges shape {edges.shape} does not match counts {counts.shape}")
    histo = summary_pb2.HistogramProto(
        min=float(edges[0]),
        max=float(edges[-1]),
        num=float(counts.sum()),
        sum=float(total) if total is not None else 0.0,
        sum_squares=float(sum_squares) if sum_squares is not None else 0.0,
        bucket_limit=edges[1:].tolist(),
        bucket=counts.tolist(),
    )
    return summary_pb2.Summary.Value(tag=tag, histo=histo)


def log_event(step: int, wall_time: float, scalars: Mapping[str, float],
              histograms: Iterable[tuple[str, np.ndarray, np.ndarray, float, float]] = ()) -> event_pb2.Event:
    """One ``Event`` holding every scalar and histogram of a log call.

    Args:
        scalars: tag -> value.
        histograms: (tag, edges (k + 1,), counts (k,), sum, sum of squares), as
            :func:`weightwatch.tags.histogram_tags` yields them.

    The values are added in place (no intermediate ``Summary`` to copy): this is
    the proto every log call writes, built once per call on the writer thread.
    """
    event = event_pb2.Event(wall_time=wall_time, step=int(step))
    values = event.summary.value
    for tag, v in scalars.items():
        values.add(tag=tag, simple_value=float(v))
    for tag, edges, counts, total, total_sq in histograms:
        values.append(histogram_value(tag, edges, counts, total, total_sq))
    return event


def hparam_value(value: object) -> bool | int | float | str:
    """TensorBoard's HParams plugin accepts bool, number and string values only, of exactly those types.

    An enum stands for its value (Hugging Face's ``SchedulerType.LINEAR`` is
    ``"linear"``), numpy scalars for their Python value, subclasses of the
    plain types for the plain value, anything else for its ``str``.

    >>> import enum
    >>> class Opt(str, enum.Enum):
    ...     ADAM = "adam"
    >>> [hparam_value(v) for v in (Opt.ADAM, np.float32(0.5), True, 3, [1, 2])]
    ['adam', 0.5, True, 3, '[1, 2]']
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, np.generic):
        value = value.item()
    for plain in (bool, int, float, str):  # bool first: it is an int
        if isinstance(value, plain):
            return plain(value) if plain is not str else str.__str__(value)
    return str(value)


def hparams_summaries(hparams: Mapping[str, object], metric_tags: Iterable[str],
                      group_name: str | None = None) -> list[summary_pb2.Summary]:
    """The experiment config and the session start for the HParams dashboard.

    ``metric_tags`` are the scalar tags shown as metric columns (loss, accuracy,
    ...): naming them keeps TensorBoard from offering every weight statistic
    as a metric.
    """
    clean = {str(k): hparam_value(v) for k, v in hparams.items()}
    config = hparams_v2.hparams_config_pb(
        hparams=[hparams_v2.HParam(name, hparam_domain(clean[name])) for name in sorted(clean)],
        metrics=[hparams_v2.Metric(tag) for tag in metric_tags],
    )
    start = hparams_v2.hparams_pb(clean, trial_id=group_name)
    return [config, start]


class _TypedReal(hparams_v2.Domain):
    """A float64 hparam with no bounds: typed (TensorBoard offers a min / max filter), never narrowed."""

    @property
    def dtype(self) -> type:
        return float

    def sample_uniform(self, rng=None) -> float:  # part of Domain's interface; nothing to sample from
        raise NotImplementedError("an unbounded hparam has no uniform distribution")

    def update_hparam_info(self, hparam_info: api_pb2.HParamInfo) -> None:
        hparam_info.type = api_pb2.DATA_TYPE_FLOAT64


def hparam_domain(value: bool | float | str) -> hparams_v2.Domain:
    """The declared type (and domain) of one hparam, so TensorBoard types its column.

    Numbers get the float64 type and no bounds: a run knows only its own value,
    and TensorBoard takes the experiment of one run for the whole log dir, so
    bounds from one run would hide the others. A bool's domain is both values;
    a string's domain has to be discrete (TensorBoard warns otherwise), and is
    the run's own value. TensorBoard prints every number with 5 significant
    digits (a width of 32 shows as 32.000).
    """
    if isinstance(value, bool):
        return hparams_v2.Discrete([False, True])
    if isinstance(value, str):
        return hparams_v2.Discrete([value])
    return _TypedReal()


def hparams_end_summary(success: bool = True, end_time: float | None = None) -> summary_pb2.Summary:
    """The session end for the HParams dashboard (status and end time)."""
    import time

    info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.STATUS_SUCCESS if success else api_pb2.STATUS_FAILURE,
        end_time_secs=time.time() if end_time is None else end_time,
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=hparams_metadata.SESSION_END_INFO_TAG,
        metadata=hparams_metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info)),
        tensor=hparams_metadata.NULL_TENSOR,
    )
    return summary


def custom_scalars_summary(layers: Iterable[str], prefix: str = "weights") -> summary_pb2.Summary:
    """A Custom Scalars layout with one chart per layer: its mean and std together."""
    charts = [
        layout_pb2.Chart(
            title=layer,
            multiline=layout_pb2.MultilineChartContent(
                tag=[rf"^{re.escape(prefix)}/{re.escape(layer)}/(mean|std)$"]
            ),
        )
        for layer in layers
    ]
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="weights: mean and std per layer", chart=charts)])
    tensor = tensor_pb2.TensorProto(
        dtype="DT_STRING",
        string_val=[layout.SerializeToString()],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
    )
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=custom_scalar_metadata.PLUGIN_NAME)
    )
    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=custom_scalar_metadata.CONFIG_SUMMARY_TAG, tensor=tensor,
                                         metadata=metadata)]
    )
