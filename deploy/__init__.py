"""Deploying a found network: export an ONNX graph or a TensorRT engine, verify it, check its latency.

``artifact`` writes and reads deployment folders (export, verification,
deploy.json), ``weights`` loads trained checkpoints, ``check`` times a
deployment under a latency profile and compares with its prediction. The
API takes objects (a space, an architecture, a profile); turning a user's
argument into them is the CLI's job. Imports ``hwnas.models`` and
``hwnas.latency``, never ``hwnas.search``.
"""

from hwnas.deploy.artifact import FORMATS, MAX_ERROR, PRECISIONS, build_module, export, read_manifest
from hwnas.deploy.check import check
from hwnas.deploy.weights import load_weights

__all__ = ["FORMATS", "MAX_ERROR", "PRECISIONS", "build_module", "check", "export", "load_weights", "read_manifest"]
