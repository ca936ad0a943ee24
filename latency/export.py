"""The one ONNX exporter: profiling (parts and calibration networks) and deployment export the same graph.

torch's TorchScript exporter at opset 17, constants folded (in eval mode that
folds batch norms into the convolutions). It takes ~30 ms per small module
where the dynamo exporter takes >1 s, which matters for the thousands of
parts of a profile; and a deployed network is exported the same way, so the
graph ``hwnas deploy check`` times is the graph the profiles' calibration
networks were timed as.
"""

from __future__ import annotations

import contextlib
import io
import warnings

from hwnas.atomic import atomic_write_bytes

OPSET = 17
INPUT_NAME = "input"


def export_onnx(module, input_shape: tuple[int, ...], batch: int, path, *, dynamic_batch: bool = False,
                half: bool = False, output_name: str = "output") -> None:
    """Write ``module`` (put in eval mode; in half precision with ``half``, which converts it in place) as an
    ONNX graph with input ``input`` of shape ``(batch, *input_shape)`` (the batch axis symbolic, ``batch``,
    with ``dynamic_batch``) and one output named ``output_name``."""
    import torch

    module = module.eval()
    x = torch.randn(batch, *input_shape)
    if half:
        module, x = module.half(), x.half()
    kwargs = dict(input_names=[INPUT_NAME], output_names=[output_name], opset_version=OPSET,
                  do_constant_folding=True)
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), buffer, dynamo=False, **kwargs)
        except TypeError:  # torch without the ``dynamo`` keyword: the TorchScript exporter is the default
            torch.onnx.export(module, (x,), buffer, **kwargs)
    atomic_write_bytes(path, buffer.getvalue())
