"""The comparison inside TensorBoard: ``tensorboard --logdir runs/`` shows the population too.

``compare`` writes one more run directory, ``<root>/weightwatch-population/``:

- an event file with every figure as an image (``compare/<figure>``, Images
  tab) and the tables as markdown (``compare/table``, ``compare/dispersion``,
  Text tab);
- a projector embedding per architecture (Projector tab): ``tensors_<arch>.tsv``
  (one row per run: its weight sketch, every layer, see :mod:`weightwatch.sketch`),
  ``metadata_<arch>.tsv`` (run, group, family, final metric) and
  ``projector_config.pbtxt`` listing them;
- ``weightwatch-population.json``, the marker that tells the loader this
  directory is compare's output, not a run.

The directory is rewritten by each compare.
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import numpy as np

from weightwatch.events import EventFileWriter

from ..comparison.compare import Comparison
from ..loading.find import POPULATION_MARKER
from .embedding import sketch_matrix
from .numbers import format_p

POPULATION_DIR = "weightwatch-population"


def _png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk."""
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _num(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3f}"


def write_projector(c: Comparison, out: Path) -> list[str]:
    """Write the sketch embeddings and projector_config.pbtxt; returns the embeddings' names."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    config = projector_config_pb2.ProjectorConfig()
    by_arch: dict[tuple[str, str], list] = {}
    for lab in c.grouping.labelled:
        if lab.run.architecture:
            by_arch.setdefault((lab.family, lab.run.architecture), []).append(lab)
    names = []
    for (family, arch), members in sorted(by_arch.items()):
        kept, matrices, _ = sketch_matrix(members)
        if len(kept) < 2:
            continue
        x = matrices["all"]
        np.savetxt(out / f"tensors_{arch}.tsv", x, delimiter="\t", fmt="%.6g")
        with open(out / f"metadata_{arch}.tsv", "w", encoding="utf-8") as fh:
            fh.write(f"run\tgroup\tfamily\t{c.metric_label}\n")
            for lab in kept:
                fh.write(f"{lab.name}\t{lab.group}\t{family}\t{lab.value:.6g}\n")
        name = f"weight sketch: {family} [{arch}]"
        config.embeddings.add(tensor_name=name, tensor_path=f"tensors_{arch}.tsv",
                              metadata_path=f"metadata_{arch}.tsv", tensor_shape=list(x.shape))
        names.append(name)
    (out / "projector_config.pbtxt").write_text(text_format.MessageToString(config))
    return names


def write_tensorboard(c: Comparison) -> Path:
    """Write ``<root>/weightwatch-population/`` (see the module doc); returns the directory."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.text import summary_v2 as text_v2

    out = c.root / POPULATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file() and ("tfevents" in old.name or old.suffix in (".tsv", ".pbtxt")):
            old.unlink()
    embeddings = write_projector(c, out)
    (out / POPULATION_MARKER).write_text(json.dumps({
        "format": "weightwatch-population", "version": 1, "created": time.time(),
        "runs": len(c.grouping.labelled), "figures": [f.name for f in c.figures], "embeddings": embeddings,
    }, indent=1))
    writer = EventFileWriter(out)
    try:
        for fig in c.figures:
            data = Path(fig.path).read_bytes()
            height, width = _png_size(data)
            image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data)
            writer.write_summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
                tag=f"compare/{fig.name}", image=image)]), step=0)
        table = _markdown_table(["family", "group", "runs", "min", "median", "max"],
                                [[r.family, r.group, str(r.runs), _num(r.min), _num(r.median), _num(r.max)]
                                 for r in c.rows])
        writer.write_summary(text_v2.text_pb("compare/table", f"Final {c.metric_label} per group\n\n{table}"), 0)
        if c.dispersion:
            disp = _markdown_table(["family", "role", "high", "low", "ratio", "p", "reading"],
                                   [[d.family, d.role, str(d.n_high), str(d.n_low), _num(d.ratio), format_p(d.p_value),
                                     d.reading] for d in c.dispersion])
            writer.write_summary(text_v2.text_pb("compare/dispersion", disp), 0)
    finally:
        writer.close()
    return out
