"""Built graphs shared by the graphgen tests: each standard variant is built once per session."""

from functools import cache

import numpy as np
import onnx
import onnxruntime as ort

from graphgen.onnx_io import build
from graphgen.spec import STANDARD_VARIANTS


@cache
def built(name: str, **options) -> onnx.ModelProto:
    return build(STANDARD_VARIANTS[name], **options)


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"input": x})[0]


def normal_input(spec, batch: int = 2, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, spec.image_size, spec.image_size), dtype=np.float32)
