"""How big a network is before it is built, checked against the sane limits.

`widths: [1000000000]`, `classes: 1000000000` or `--image-size 1000000` is a typo far more often
than an intent; left alone, the build dies of MemoryError, and `--depth 60000002` spends hours
expanding thirty million blocks. So every build checks, in this order and before any weight
exists: the block count (from the spec, before expanding it), then the plan's parameters, MACs
and largest activation, then the memory the build needs against what the machine has. Past a
limit the build is refused in one line with the number, the limit and how to raise it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from graphgen.cost import FP32, plan_memory
from graphgen.errors import SpecError
from graphgen.plan import Plan, expand
from graphgen.spec import Spec
from graphgen.weights import calibration_images
from resnet_common.errors import shown
from resnet_common.limits import SizeLimits, check_memory, check_size, parse_limits

SPEC_KEY = "size_limit"  # in a spec file: `size_limit: {params: 5000000000}`
# The build holds each weight about 1.35x (README); 2x leaves room for fp16 copies and the fc's
# float64 draw. The calibration pass keeps a few tensors and one im2col copy (9x a 3x3 conv's
# input) per image.
BUILD_WEIGHT_FACTOR = 2
CALIBRATION_FACTOR = 12


def limit_hint(key: str) -> str:
    return f"--size-limit {key}=N (or '{SPEC_KEY}: {{{key}: N}}' in a spec file)"


def build_memory(plan: Plan) -> int:
    """Bytes a build needs at its peak, roughly (an upper bound good to a factor of two)."""
    memory = plan_memory(plan)
    calibration = calibration_images(plan) * CALIBRATION_FACTOR * memory.largest_activation
    return FP32 * (BUILD_WEIGHT_FACTOR * memory.weight_values + calibration)


def check_memory_bytes(plan: Plan, batch: int) -> int:
    """Bytes running a batch through the graph and its source takes, roughly: the inputs and,
    per image, a few live tensors of the largest activation's size (onnxruntime's arena, the
    float64 reference evaluation)."""
    per_image = (
        3 * plan.spec.image_size**2 + CALIBRATION_FACTOR * plan_memory(plan).largest_activation
    )
    return 2 * FP32 * batch * per_image


def checked_network(
    spec: Spec, limits: SizeLimits | None = None, *, hint: Callable[[str], str] = limit_hint
) -> Plan:
    """The spec's plan, after refusing (TooLargeError) a network past `limits`: its blocks (from
    the spec, before expanding it), parameters, MACs and largest activation (from the plan)."""
    limits = limits or SizeLimits()
    what = f"network {spec.name}"
    check_size(sum(spec.layers), limits.blocks, what=what, unit="blocks", key="blocks", hint=hint)
    plan = expand(spec)
    check_size(plan.params, limits.params, what=what, unit="parameters", key="params", hint=hint)
    check_size(plan.macs, limits.macs, what=what, unit="MACs per image", key="macs", hint=hint)
    check_size(
        plan_memory(plan).largest_activation,
        limits.activation,
        what=what,
        unit="values in its largest activation (one image)",
        key="activation",
        hint=hint,
    )
    return plan


def checked_plan(
    spec: Spec,
    limits: SizeLimits | None = None,
    *,
    hint: Callable[[str], str] = limit_hint,
    available: int | None = None,
) -> Plan:
    """The spec's plan, after refusing (TooLargeError) a network past `limits` or a build the
    machine's memory cannot hold."""
    limits = limits or SizeLimits()
    plan = checked_network(spec, limits, hint=hint)
    check_memory(
        build_memory(plan),
        what=f"building {spec.name}",
        limits=limits,
        hint=hint,
        available=available,
    )
    return plan


def limits_from_spec(value: object, *, source: str = "spec") -> dict[str, int]:
    """The `size_limit` mapping of a spec file, as `--size-limit` would give it."""
    if not isinstance(value, Mapping) or not value:
        raise SpecError(
            f"{source}: key {SPEC_KEY!r} must map limits to numbers, e.g. "
            f"{{params: 5000000000}}; got {shown(value)}"
        )
    for key, number in value.items():
        # YAML reads 5e9 (no dot) as text: a number's text is a number here too
        scalar = isinstance(number, int | float | str) and not isinstance(number, bool)
        if not scalar or len(str(key)) > 20 or len(str(number)) > 30:
            raise SpecError(
                f"{source}: key {SPEC_KEY!r}: {shown(key)} must map to a number, got "
                f"{shown(number)}"
            )
    try:
        return parse_limits(",".join(f"{k}={v}" for k, v in value.items()))
    except ValueError as err:
        raise SpecError(f"{source}: key {SPEC_KEY!r}: {err}") from None
