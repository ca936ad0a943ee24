"""How a NAS-Bench-201 network (spaces ``nb201``, ``nb201-cifar100``, ``nb201-imagenet16``) splits into timed
parts, and its ONNX graph built directly (for the graph calibration features, :mod:`hwnas.latency.graph`)."""

from __future__ import annotations

import itertools
from typing import Iterator

from torch import nn

from hwnas.errors import StructureError
from hwnas.latency.kernels.base import Decomposition, Part, register
from hwnas.models.spaces.nb201 import (CELLS_PER_STAGE, CONV_KERNELS, EDGES, OPS, STEM_CHANNELS, Cell, NB201Space,
                                       Reduction, edge_module)


def onnx_network(cell: Cell, resolution: int = 32, num_classes: int = 10, batch: int = 1):
    """The ONNX graph (opset 17, fp32) the TorchScript exporter makes of ``NB201Network(cell)`` in eval mode,
    built directly (in milliseconds, where the exporter takes most of a second).

    The same operators in the same order: batch norms after convolutions folded
    into the convolutions' biases, ``skip_connect`` edges gone (the source
    tensor is used), ``none`` edges ``Mul`` by a scalar 0, a node the
    left-to-right ``Add`` of its edges. Weights are random: only the graph's
    structure is meant to match (a test compares the graph ONNX Runtime
    optimizes from both). The latency predictor reads structure features of
    NB201 networks from it (:mod:`hwnas.latency.graph`).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    counter = iter(range(1 << 30))

    def name(prefix: str) -> str:
        return f"{prefix}{next(counter)}"

    def weight(*shape, positive: bool = False) -> str:
        n = name("w")
        values = rng.standard_normal(shape) * 0.1
        inits.append(numpy_helper.from_array((np.abs(values) + 1 if positive else values).astype(np.float32), n))
        return n

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = name("t")
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(x: str, cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> str:
        inputs = [x, weight(cout, cin, k, k)] + ([weight(cout)] if bias else [])
        return node("Conv", inputs, dilations=[1, 1], group=1, kernel_shape=[k, k], pads=[(k - 1) // 2] * 4,
                    strides=[stride, stride])

    def relu_conv(x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:  # ReLU-conv-BN, BN folded
        return conv(node("Relu", [x]), cin, cout, k, stride)

    def edge(op: str, x: str, c: int) -> str:
        if op == "skip_connect":
            return x
        if op == "none":
            zero = node("Constant", [], value=numpy_helper.from_array(np.array(0.0, dtype=np.float32)))
            return node("Mul", [x, zero])
        if op == "avg_pool_3x3":
            return node("AveragePool", [x], ceil_mode=0, count_include_pad=0, kernel_shape=[3, 3],
                        pads=[1, 1, 1, 1], strides=[1, 1])
        return relu_conv(x, c, c, CONV_KERNELS[op])

    x = conv("input", 3, STEM_CHANNELS, 3)
    c = STEM_CHANNELS
    for stage in range(3):
        if stage:
            y = relu_conv(relu_conv(x, c, 2 * c, 3, 2), 2 * c, 2 * c, 3)
            pooled = node("AveragePool", [x], ceil_mode=0, count_include_pad=1, kernel_shape=[2, 2],
                          pads=[0, 0, 0, 0], strides=[2, 2])
            x = node("Add", [y, conv(pooled, c, 2 * c, 1, bias=False)])
            c *= 2
        for _ in range(CELLS_PER_STAGE):
            values = [x]
            for target in (1, 2, 3):
                total = None
                for op, (src, dst) in zip(cell.ops, EDGES):
                    if dst == target:
                        e = edge(op, values[src], c)
                        total = e if total is None else node("Add", [total, e])
                values.append(total)
            x = values[3]
    x = node("BatchNormalization", [x, weight(c), weight(c), weight(c), weight(c, positive=True)], epsilon=1e-5,
             momentum=0.9)
    x = node("Flatten", [node("GlobalAveragePool", [node("Relu", [x])])], axis=1)
    x = node("Gemm", [x, weight(num_classes, c), weight(num_classes)], alpha=1.0, beta=1.0, transB=1)
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes, "nb201", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, resolution, resolution])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, num_classes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@register(NB201Space)
class NB201Kernels(Decomposition):
    """The parts of an :class:`~hwnas.models.spaces.nb201.NB201Space`: stem, cell edges, reductions, head."""

    builds_onnx = True

    def onnx_network(self, arch: Cell, batch: int = 1):
        """The network's ONNX graph built directly (see :func:`onnx_network`)."""
        return onnx_network(arch, self.space.resolution, self.space.num_classes, batch)

    def fanout_features(self, cell: Cell) -> list[float]:
        """One-hot, per cell node, of the multiset of operations on the edges that leave it."""
        out: list[float] = []
        for src in sorted({s for s, _ in EDGES}):
            ops = tuple(sorted(op for op, (s, _) in zip(cell.ops, EDGES) if s == src))
            choices = list(itertools.combinations_with_replacement(sorted(OPS), len(ops)))
            out += [float(ops == c) for c in choices]
        return out

    def parts(self, arch: Cell) -> list[Part]:
        """Stem, one part per non-``none`` edge of every cell, the two reductions, and the head."""
        stages = self.space.stages()
        out = [Part("nb201:stem", 3, STEM_CHANNELS, self.space.resolution)]
        for i, (c, h) in enumerate(stages):
            if i:
                pc, ph = stages[i - 1]
                out.append(Part("nb201:reduce", pc, c, ph, stride=2))
            for _ in range(CELLS_PER_STAGE):
                out.extend(Part(f"nb201:{op}", c, c, h) for op in arch.ops if op != "none")
        c, h = stages[-1]
        out.append(Part("nb201:head", c, self.space.num_classes, h))
        return out

    def grid_parts(self, grid: str = "coarse") -> Iterator[Part]:
        """Every part the space produces (the space is small: the grid makes no difference)."""
        stages = self.space.stages()
        yield Part("nb201:stem", 3, STEM_CHANNELS, self.space.resolution)
        for i, (c, h) in enumerate(stages):
            if i:
                yield Part("nb201:reduce", stages[i - 1][0], c, stages[i - 1][1], stride=2)
            for op in OPS[1:]:
                yield Part(f"nb201:{op}", c, c, h)
        yield Part("nb201:head", stages[-1][0], self.space.num_classes, stages[-1][1])

    def build_part(self, part: Part) -> tuple[nn.Module, tuple[int, int, int]]:
        shape = (part.cin, part.resolution, part.resolution)
        op = part.op.removeprefix("nb201:")
        if op == "stem":
            module = nn.Sequential(nn.Conv2d(part.cin, part.cout, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(part.cout))
        elif op == "reduce":
            module = Reduction(part.cin, part.cout)
        elif op == "head":
            module = nn.Sequential(nn.BatchNorm2d(part.cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                   nn.Linear(part.cin, part.cout))
        elif op in OPS[1:]:
            module = edge_module(op, part.cin)
        else:
            raise StructureError(f"unknown NAS-Bench-201 part {part.op!r}")
        return module, shape
