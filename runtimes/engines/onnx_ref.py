"""onnx's own reference evaluator: the ONNX spec in numpy, a check of the other engines' reading
of the operators. Small models only.

Measured here (2 cores): about 0.5 GMAC/s in fp32, so the 1 GMAC limit per run keeps a run near
2 s (CIFAR ResNet-20 at batch 2 is 0.08 GMAC, ResNet-50 at 64x64 and batch 2 is 0.7 GMAC);
ResNet-152 at 224 and batch 8 would take about a minute and a half and is refused. fp32 only:
numpy accumulates float16 dot products in float16 (relative L2 error 5e-2 on ResNet-50, ten
times slower), which measures numpy, not the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtimes.base import Runner, UnsupportedError

MAX_MACS = 1_000_000_000  # per run, at the largest batch asked for


class OnnxRefRunner(Runner):
    name = "onnx-ref"
    packages = ("onnx",)
    precisions = ("fp32",)

    @classmethod
    def availability(cls) -> str | None:
        try:
            import onnx.reference  # noqa: F401
        except ImportError:
            return "onnx.reference not available (onnx >= 1.13 needed)"
        return None

    def check_size(self) -> None:
        """Refuse big models up front rather than run for an hour (`macs`, when the caller
        gave it, saves walking the graph)."""
        macs = self.macs
        if macs is None:
            from graphgen.cost import graph_cost
            from graphgen.onnx_io import load

            macs = graph_cost(load(self.model_path, load_weights=False)).macs
        total = macs * max(self.batch_sizes)
        if total > MAX_MACS:
            raise UnsupportedError(
                f"onnx-ref refuses {self.model_path.name}: {total / 1e6:,.0f} MMACs at batch "
                f"{max(self.batch_sizes)} is over its {MAX_MACS / 1e6:,.0f} MMAC limit "
                "(numpy would take minutes); use a smaller model, image size or batch"
            )

    def activate_impl(self) -> None:
        from onnx.reference import ReferenceEvaluator

        self.check_size()
        self.evaluator = ReferenceEvaluator(str(self.model_path))
        self.output_names = list(self.evaluator.output_names)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.evaluator.run(None, feeds)
        return dict(zip(self.output_names, outputs, strict=True))

    def deactivate_impl(self) -> None:
        del self.evaluator

    def describe(self) -> dict[str, Any]:
        import onnx

        info = super().describe()
        info.update(version=f"onnx {onnx.__version__}", max_macs=MAX_MACS)
        return info
