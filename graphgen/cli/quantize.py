"""`graphgen quantize`: a graphgen float32 file into a QDQ int8 graph (numpy calibration only).

A separate step, not `graphgen build --dtype int8`: quantization needs the network's own weights
(trained ones from `resnet-train --export` or `graphgen inject`, not only He-initialised ones)
and calibration data, which `build` never sees; reading the finished file keeps one path for
every source of weights and leaves `build` untouched. See docs/int8.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from graphgen.onnx_io import check_target, load, plan_of, save
from graphgen.quantize import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    DEFAULT_PLACEMENT,
    METHODS,
    PLACEMENTS,
    QuantOptions,
    check_source,
    digest,
    load_calibration,
    quantize,
    seeded_calibration,
)
from graphgen.quantize.placement import kept_float
from resnet_common.cli import Subparsers, add_json_flag, positive_int, print_json, seed_int
from resnet_common.fileio import refuse_overwriting_inputs
from resnet_common.locks import output_lock


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "quantize",
        help="write the QDQ int8 graph of a graphgen float32 file (BN folded, calibrated)",
        description="Quantize a graphgen float32 graph to int8 QDQ: int8 weights per output "
        "channel, int8 activations per tensor (symmetric, zero points 0), float32 I/O. The "
        "file's own weights are used (BN folded first); activation ranges come from a numpy "
        "forward pass over calibration images.",
        epilog="Examples:\n"
        "  graphgen quantize resnet50-folded.onnx -o resnet50-int8.onnx\n"
        "  graphgen quantize trained.onnx --calibration-data val-images/ --method max -o q.onnx",
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a float32 graphgen graph")
    p.add_argument("-o", "--output", type=Path, help="output file (default MODEL-int8.onnx)")
    p.add_argument(
        "--calibration-data",
        dest="calibration_data",
        type=Path,
        metavar="PATH",
        help="a folder of images or a .npy (N images, NCHW or NHWC; uint8 pixels, or floats "
        "normalised as the graph's input); default: seeded uniform pixels",
    )
    p.add_argument(
        "--calibration-images",
        dest="calibration_images",
        type=positive_int,
        help=f"how many images calibrate (default {DEFAULT_CALIBRATION_IMAGES} seeded; all of "
        "--calibration-data)",
    )
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="activation range")
    p.add_argument(
        "--percentile",
        type=_float,
        default=DEFAULT_PERCENTILE,
        help=f"percentile of |x| for --method percentile (default {DEFAULT_PERCENTILE:g})",
    )
    p.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default=DEFAULT_PLACEMENT,
        help="where Q/DQ go: ort (conv inputs and outputs: integer convs on onnxruntime and "
        "OpenVINO; the default) or trt (TensorRT's rules: conv/gemm inputs and the residual "
        "input of each Add)",
    )
    p.add_argument(
        "--reduce-range",
        dest="reduce_range",
        action="store_true",
        help="7-bit weights, for x86 CPUs without VNNI (onnxruntime's int16 sums saturate)",
    )
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of the default calibration images, 0 .. 2**63-1 (default 0)",
    )
    add_json_flag(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    options = QuantOptions(
        method=args.method,
        percentile=args.percentile,
        placement=args.placement,
        reduce_range=args.reduce_range,
    )
    out = args.output or args.model.with_name(f"{args.model.stem}-int8.onnx")
    inputs = [(f"model {args.model}", args.model)]
    if args.calibration_data is not None:
        inputs.append((f"--calibration-data {args.calibration_data}", args.calibration_data))
    refuse_overwriting_inputs(out, inputs)
    check_target(out)
    with output_lock(out):
        return _quantize(args, options, out)


def _quantize(args: argparse.Namespace, options: QuantOptions, out: Path) -> int:
    model = load(args.model)
    check_source(model, str(args.model))
    plan = plan_of(model, source=str(args.model))
    if args.calibration_data is not None:
        calibration = load_calibration(
            args.calibration_data, model, plan, count=args.calibration_images
        )
    else:
        count = args.calibration_images or DEFAULT_CALIBRATION_IMAGES
        calibration = seeded_calibration(model, plan, count=count, seed=args.seed)
    quantized = quantize(
        model,
        calibration,
        options=options,
        source=str(args.model),
        source_digest=digest(args.model),
    )
    save(quantized, out)
    if args.json:
        print_json(
            {"path": str(out), "source": str(args.model), "placement": options.placement,
             "method": options.method_label, "calibration_images": len(calibration.images),
             "kept_float": kept_float(plan)}
        )  # fmt: skip
        return 0
    float_ops = kept_float(plan)
    print(
        f"wrote {out}  (int8 QDQ, {options.placement} placement, {options.method_label}, "
        f"{len(calibration.images)} calibration images" + (f"; {float_ops})" if float_ops else ")")
    )
    return 0
