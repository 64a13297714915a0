"""The comparison inside TensorBoard, beside the runs.

``compare`` writes one more run directory, ``<out>/weightwatch-population/``
(never into the runs' folders), and prints the command that shows it next to
the runs (:func:`logdir_spec`): ``tensorboard --logdir_spec runs:<runs>,compare:<out>``
(Images and Text); TensorBoard's projector reads a plain ``--logdir`` only, so the
embedding is seen with ``tensorboard --logdir <out>`` (:func:`projector_command`).
It holds:

- an event file with every figure as an image (``compare/<figure>``, Images
  tab) and the tables as markdown (``compare/table``, ``compare/dispersion``,
  Text tab);
- a projector embedding per architecture (Projector tab): ``tensors_<arch>.tsv``
  (one row per run: its weight sketch, every layer, see :mod:`weightwatch.sketch`),
  ``metadata_<arch>.tsv`` (run, group, family, final metric) and
  ``projector_config.pbtxt`` listing them;
- ``weightwatch-population.json``, the marker that tells the loader this
  directory is compare's output, not a run (should ``--out`` lie below the runs).

Run names are written with control characters escaped (a tab or newline in a
name would break the TSV). The directory is rewritten by each compare.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import struct
import time
from pathlib import Path

import numpy as np

from weightwatch.events import EventFileWriter
from weightwatch.storage import RemoteDir

from ..comparison.compare import Comparison
from ..loading.find import POPULATION_MARKER, printable
from .embedding import sketch_matrix
from .numbers import format_p
from .plots import slug

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
        safe = slug(arch)  # the architecture id comes from the run's weightwatch.json: never a path
        np.savetxt(out / f"tensors_{safe}.tsv", x, delimiter="\t", fmt="%.6g")
        with open(out / f"metadata_{safe}.tsv", "w", encoding="utf-8", newline="\n") as fh:
            fh.write(f"run\tgroup\tfamily\t{printable(c.metric_label)}\n")
            for lab in kept:
                fh.write(f"{printable(lab.name)}\t{lab.group}\t{printable(family)}\t{lab.value:.6g}\n")
        name = f"weight sketch: {printable(family)} [{printable(arch)}]"
        config.embeddings.add(tensor_name=name, tensor_path=f"tensors_{safe}.tsv",
                              metadata_path=f"metadata_{safe}.tsv", tensor_shape=list(x.shape))
        names.append(name)
    (out / "projector_config.pbtxt").write_text(text_format.MessageToString(config))
    return names


def write_tensorboard(c: Comparison, parent: Path) -> Path:
    """Write ``<parent>/weightwatch-population/`` (see the module doc); returns the directory."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.text import summary_v2 as text_v2

    out = parent / POPULATION_DIR
    out.mkdir(parents=True, exist_ok=True)
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


def is_population_file(name: str) -> bool:
    """A file of the population's view that a new compare replaces."""
    return "tfevents" in name or name.endswith((".tsv", ".pbtxt"))


def logdir_spec(runs: list[Path | RemoteDir], out: Path) -> str:
    """The command that shows the runs and compare's view of them side by side in TensorBoard.

    Each root is named by its last component (made unique); the view's run is then
    ``compare/weightwatch-population``. Paths are absolute (URLs as they are: TensorBoard
    reads s3:// and gs:// itself), the argument quoted for a POSIX shell.

    >>> logdir_spec([Path("/data/runs"), RemoteDir("s3://bucket/runs")], Path("/tmp/report"))
    'tensorboard --logdir_spec runs:/data/runs,runs2:s3://bucket/runs,compare:/tmp/report'
    """
    def where(root: Path | RemoteDir) -> str:
        return root.url if isinstance(root, RemoteDir) else str(Path(root).resolve())

    names: list[str] = []
    for root in runs:
        base = re.sub(r"[:,\s]+", "_", root.name if isinstance(root, RemoteDir) else Path(root).resolve().name) \
            or "runs"
        name, i = base, 2
        while name in names or name == "compare":
            name, i = f"{base}{i}", i + 1
        names.append(name)
    entries = [f"{n}:{where(r)}" for n, r in zip(names, runs)] + [f"compare:{Path(out).resolve()}"]
    return f"tensorboard --logdir_spec {shlex.quote(','.join(entries))}"


def projector_command(out: Path) -> str:
    """The command that shows the population's projector embedding (a plain ``--logdir``).

    >>> projector_command(Path("/tmp/my report"))
    "tensorboard --logdir '/tmp/my report'"
    """
    return f"tensorboard --logdir {shlex.quote(str(Path(out).resolve()))}"
