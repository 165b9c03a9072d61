"""`ort-cpu`: onnxruntime's CPU execution provider."""

from __future__ import annotations

from runtimes.engines.ort import OrtRunner


class OrtCpuRunner(OrtRunner):
    """onnxruntime's CPU provider. fp16 graphs run with fp32 kernels between inserted casts."""

    name = "ort-cpu"
    precisions = ("fp32", "fp16")
