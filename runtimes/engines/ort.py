"""The onnxruntime session every onnxruntime runner shares (`ort-cpu`, `ort-cuda`, `ort-trt`).

onnxruntime falls back to the CPU provider silently when a provider fails to load, so a
non-CPU session sets `session.disable_cpu_ep_fallback` and `activate` checks that the
first provider the session reports is the one asked for; a fallback is a RunnerError, never a
pass. A provider can also fail after loading: `InferenceSession.run` then catches the error,
prints a notice to stdout and switches the session to the CPU provider. Every session therefore
calls `disable_fallback()` (the run raises instead), and non-CPU runners re-check the session's
provider after each `infer` and in `verify()`, which the harness calls after its timed loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from runtimes.base import Runner, RunnerError

CPU = "CPUExecutionProvider"


def provider_reason(provider: str) -> str | None:
    """Why `provider` cannot be used here, or None."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed"
    if provider not in ort.get_available_providers():
        return f"onnxruntime built without {provider}"
    return None


class OrtRunner(Runner):
    """One InferenceSession on one execution provider."""

    provider: ClassVar[str] = CPU
    packages: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnxruntime-gpu")
    graph_optimization_level: ClassVar[str] = "ORT_ENABLE_ALL"  # onnxruntime's default

    @classmethod
    def availability(cls) -> str | None:
        return provider_reason(cls.provider)

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        """The provider list for the session, in priority order (override to add options)."""
        return [self.provider]

    def session_options(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, self.graph_optimization_level
        )
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        if self.provider != CPU:
            opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        return opts

    def activate_impl(self) -> None:
        import onnxruntime as ort

        self._opts = self.session_options()
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), sess_options=self._opts, providers=self.providers()
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise RunnerError(f"{self.name}: cannot load {self.model_path}: {err}") from err
        # A provider failing inside run() would otherwise be retried on the CPU, with a notice
        # printed to stdout (which would also corrupt `parity --json`).
        self.session.disable_fallback()
        self._check_provider()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _check_provider(self) -> None:
        used = self.session.get_providers()
        if not used or used[0] != self.provider:
            raise RunnerError(
                f"{self.name}: onnxruntime fell back to {used[0] if used else 'nothing'} "
                f"instead of {self.provider}"
            )

    def verify(self) -> None:
        if self.provider != CPU and getattr(self, "session", None) is not None:
            self._check_provider()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        if self.provider != CPU:
            self._check_provider()
        return dict(zip(self.output_names, outputs, strict=True))

    def deactivate_impl(self) -> None:
        self.session = None  # tolerates a session that was never created

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        if self.is_active:
            self.verify()
        info = super().describe()
        opts = getattr(self, "_opts", None)
        info.update(
            provider=self.session.get_providers()[0] if self.is_active else self.provider,
            providers=self.session.get_providers() if self.is_active else None,
            graph_optimization_level=self.graph_optimization_level,
            intra_op_threads=opts.intra_op_num_threads if opts is not None else self.threads,
            version=f"onnxruntime {ort.__version__}",
        )
        return info
