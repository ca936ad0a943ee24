"""Graph features of the networks of a finite space, for the ``graph`` calibration form.

Why: an NB201 network at batch 1 on one CPU core takes 0.2–4 ms, spread over
~200 small operators, so what ONNX Runtime's graph optimizer makes of a cell
sets much of its time: common subexpressions (two pools, ReLUs or ``x·0`` of
the same node) are merged, a ``Mul`` by 0 folds into a convolution, an
``Add`` fuses into the convolution before it, and on AVX-512 convolutions and
pools run in a blocked layout (NCHWc) with ``ReorderInput``/``ReorderOutput``
nodes wherever a tensor crosses between layouts. The isolated parts cannot
see any of that. Measured here on 400 NB201 networks (10-fold cross
validation, timing in rounds interleaved across networks): the calibrated part sum
was within ±10% for 85%; adding the operator counts of the optimized graph
and the cell's fan-out (which operations leave each node) brought it to 100%
(MAPE 0.7%), with the ``Reorder`` counts the largest single term.

Two kinds of features, both exact and cheap:

- ``graph_counts``: the number of nodes of each operator type in the graph
  ONNX Runtime optimizes from the network (built directly by the space's
  decomposition, ``onnx_network``, in ~15 ms with the optimization, where exporting from
  torch takes most of a second). Computed for every architecture of the space
  when the profile is measured, with the profile's ONNX Runtime and settings,
  and stored in the profile (``graph.parquet``).
- ``fanout_features``: per cell node, which multiset of operations leaves it
  (one-hot over all multisets).
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.errors import ProfileError
from hwnas.latency.kernels import kernels_for
from hwnas.models.spaces.base import FiniteSpace


def supports_graph_features(space, backend: str, settings: dict) -> bool:
    """Whether a profile of ``space`` on this backend gets graph features (finite spaces whose decomposition
    builds ONNX graphs, ONNX Runtime on CPU)."""
    return (kernels_for(space).builds_onnx and isinstance(space, FiniteSpace) and backend == "onnxruntime"
            and settings.get("device", "cpu") == "cpu")


def optimized_op_counts(model, threads: int = 1) -> collections.Counter:
    """Node count per operator type (``domain:op``) of the graph ONNX Runtime (CPU, all optimizations) makes of
    an ONNX model (a ModelProto or its bytes)."""
    import onnx
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else model.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="hwnas-graph-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 3
        ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(out), load_external_data=False).graph
    return collections.Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in graph.node)


def graph_table(space, settings: dict, progress: bool = False) -> pd.DataFrame:
    """``graph_counts`` of every architecture of a finite space: one row per architecture (column ``arch``,
    its text), one integer column per operator type."""
    from tqdm import tqdm

    rows = []
    threads = int(settings.get("threads", 1))
    batch = int(settings.get("batch", 1))
    kernels = kernels_for(space)
    for arch in tqdm(space.all_archs(), disable=not progress, desc="optimized graphs", unit="net"):
        graph = kernels.onnx_network(arch, batch=batch)
        rows.append({"arch": space.format(arch), **optimized_op_counts(graph, threads)})
    table = pd.DataFrame(rows).fillna(0)
    ops = sorted(c for c in table.columns if c != "arch")
    return table[["arch"] + ops].astype({op: "int64" for op in ops}).sort_values("arch").reset_index(drop=True)


class GraphFeatures:
    """The extra calibration features of an architecture: its graph counts (from the profile's table, in the
    operator order ``ops``) followed by its fan-out features (from the space's decomposition)."""

    def __init__(self, space, table: pd.DataFrame, ops: list[str] | None = None):
        self.space = space
        self._fanout = kernels_for(space).fanout_features
        self.ops = list(ops) if ops is not None else sorted(c for c in table.columns if c != "arch")
        missing = [op for op in self.ops if op not in table.columns]
        if missing:
            raise ProfileError(f"the profile's graph table lacks operator columns {', '.join(missing)}")
        values = table[self.ops].to_numpy(dtype=float)
        self._rows = dict(zip(table["arch"], values))

    def __call__(self, arch) -> np.ndarray:
        key = arch if isinstance(arch, str) else self.space.format(arch)
        row = self._rows.get(key)
        if row is None:
            raise ProfileError(f"architecture {key} is not in the profile's graph table (was the profile measured "
                               f"for space {self.space.name}?)")
        cell = self.space.parse(key) if isinstance(arch, str) else arch
        return np.concatenate([row, self._fanout(cell)])
