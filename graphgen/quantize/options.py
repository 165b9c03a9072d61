"""What a user chooses about quantization: the calibration method, the placement, 7-bit weights."""

from __future__ import annotations

from dataclasses import dataclass

from resnet_common.errors import UserError

METHODS = ("percentile", "max")
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
PLACEMENTS = ("ort", "trt")
DEFAULT_PLACEMENT = "ort"
QMAX = 127


@dataclass(frozen=True)
class QuantOptions:
    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    placement: str = DEFAULT_PLACEMENT
    reduce_range: bool = False  # 7-bit weights in [-63, 63]: see `weight_qmax`

    @property
    def weight_qmax(self) -> int:
        """127, or 63 with `reduce_range`: x86 CPUs without VNNI multiply u8 x s8 pairs into
        saturating int16 sums (vpmaddubsw), which 8-bit weights overflow (255 * 127 * 2 >
        32767); onnxruntime's own quantizer offers the same 7-bit option for them."""
        return 63 if self.reduce_range else QMAX

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose {METHODS}")
        if not 50.0 < self.percentile <= 100.0:
            raise UserError(f"--percentile must be in (50, 100], got {self.percentile:g}")
        if self.placement not in PLACEMENTS:
            raise UserError(f"unknown placement {self.placement!r}; choose {PLACEMENTS}")

    @property
    def method_label(self) -> str:
        return f"percentile {self.percentile:g}" if self.method == "percentile" else "max"
