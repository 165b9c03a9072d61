"""What int8 needs from the harness: the host's int8 facts, the int8 matmul peak, and how an int8
model is made from the fp32 one it is judged against.

`bench-runtimes --precision int8` quantizes the BN-folded fp32 graph with `graphgen.quantize`
into the model cache (seeded calibration, the defaults of `graphgen quantize`), and keeps the fp32
file: int8 parity compares with torch on that fp32 graph, since int8 is an approximation of it
and no fp64 rebuild of an int8 graph means anything more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")  # x86 VNNI/AMX, Arm dot product


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_int8_dot_product() -> bool:
    """True when the CPU multiplies int8 into int32 without saturating int16 pair sums.

    x86 without VNNI (AVX2, AVX-512 without VNNI) multiplies u8 x s8 with vpmaddubsw, whose
    int16 sums saturate with full 8-bit weights; onnxruntime's QLinearConv then loses accuracy
    (measured here: rel. L2 0.107 against 0.015 with 7-bit weights on a trained ResNet-8)."""
    return bool(cpu_flags() & set(VNNI_FLAGS))


def reduce_range_here() -> bool:
    """Whether int8 graphs made for this host should use 7-bit weights."""
    return not has_int8_dot_product()


def int8_matmul_peak(n: int = 1024, seconds: float = 1.5, trials: int = 5) -> dict[str, float]:
    """The int8 GEMM rate (GOP/s, 2 n^3 per product) of onnxruntime's MLAS (MatMulInteger,
    u8 x s8 into int32), measured like `environment.matmul_peak`'s fp32 one: the best of short
    trials. Empty when onnxruntime is missing."""
    from runtimes.environment import ort_gemm_rate

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    b = rng.integers(-127, 128, (n, n), dtype=np.int8)
    try:
        rate = ort_gemm_rate("MatMulInteger", a, b, np.int32, seconds=seconds, trials=trials)
    except ImportError:
        return {}
    return {"onnxruntime": round(rate, 1)}


def quantize_file(source: Path, target: Path, *, reduce_range: bool, seed: int = 0) -> Path:
    """`graphgen quantize SOURCE -o TARGET` with the defaults (seeded calibration)."""
    from graphgen.onnx_io import load, save
    from graphgen.quantize import QuantOptions, digest, quantize

    model = load(source)
    quantized = quantize(
        model,
        options=QuantOptions(reduce_range=reduce_range),
        source=str(source),
        source_digest=digest(source),
        seed=seed,
    )
    return save(quantized, target)
