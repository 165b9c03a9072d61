"""`--export`: build the graph, inject the trained weights, verify against torch, then write.

The check runs onnxruntime on the graph and the torch model in eval mode on a held-out batch and
requires relative L2 below 1e-5 in fp32. The numbers go to `verification.json` in the run folder;
a graph that fails is not written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graphgen.inject import check_weights
from graphgen.onnx_io import build, save
from graphgen.plan import expand
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_text
from train.checkpoint import model_weights, unwrap

REL_L2_LIMIT = 1e-5
VERIFICATION = "verification.json"


class ExportCheckFailed(Exception):
    """The exported graph disagrees with the torch model (exit code 1)."""


def export_onnx(
    model: nn.Module,
    out: Path,
    *,
    images: torch.Tensor,
    run_dir: Path | None = None,
    fold: bool = False,
    provenance: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build + inject + verify + write; `images` is a normalised held-out batch [N, 3, S, S]."""
    net = unwrap(model)
    spec = net.spec
    weights = {k: v.numpy() for k, v in model_weights(net).items()}
    weights = check_weights(expand(spec), weights, source="trained model")  # type: ignore[arg-type]
    graph = build(spec, weights=weights, fold=fold)  # type: ignore[arg-type]
    del graph.metadata_props[:]  # build's seed is meaningless here: record where weights came from
    props = {**_props_of(spec, fold, graph), **(provenance or {})}
    import onnx

    onnx.helper.set_model_props(graph, props)
    result = verify(graph, net, images)
    result.update(onnx=str(out), fold_bn=fold)
    if run_dir is not None:
        atomic_write_text(Path(run_dir) / VERIFICATION, json.dumps(result, indent=2) + "\n")
    if not result["passed"]:
        raise ExportCheckFailed(
            f"exported graph disagrees with torch: rel L2 {result['rel_l2']:.2e} > {REL_L2_LIMIT:g}"
        )
    save(graph, out)
    return result


def normalisation_props(mean, std) -> dict[str, str]:
    """The run's input normalisation as graph metadata (JSON lists, 0..1 pixel scale)."""
    from graphgen.inject import NORMALIZE_MEAN, NORMALIZE_STD

    return {
        NORMALIZE_MEAN: json.dumps([float(v) for v in mean]),
        NORMALIZE_STD: json.dumps([float(v) for v in std]),
    }


def _props_of(spec, fold: bool, graph) -> dict[str, str]:
    from graphgen import __version__
    from graphgen.plan import fold_bn

    plan = fold_bn(expand(spec)) if fold else expand(spec)
    return {
        "graphgen.spec": spec.to_json(),
        "graphgen.version": __version__,
        "graphgen.params": str(plan.params),
        "graphgen.macs": str(plan.macs),
        "graphgen.fold_bn": json.dumps(fold),
        "graphgen.dtype": "float32",
        "graphgen.weights": "resnet-train",
    }


def verify(graph, model: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """onnxruntime (CPU, fp32) against the torch model in eval mode on the same batch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("--export verifies with onnxruntime: pip install onnxruntime") from None
    model = model.eval()
    x = images.detach().to("cpu", torch.float32).contiguous()
    with torch.no_grad():
        reference = model.to("cpu").float()(x).numpy().astype(np.float64)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    got = session.run(["logits"], {"input": x.numpy()})[0].astype(np.float64)
    rel = float(np.linalg.norm(got - reference) / max(np.linalg.norm(reference), 1e-30))  # type: ignore[operator]
    return {
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "batch": int(x.shape[0]),
        "rel_l2": rel,
        "max_abs": float(np.abs(got - reference).max()),
        "top1_agreement": float((got.argmax(1) == reference.argmax(1)).mean()),
        "threshold": REL_L2_LIMIT,
        "passed": rel < REL_L2_LIMIT,
    }
