"""The second bad-input battery (issue 21), graphgen and resnet-train: inputs a new user or an
attacker would try. Every case is one line on stderr (at most MAX_MESSAGE characters), exit code
2, no traceback, no hang, and nothing created, changed or removed under the test's folder.

Cases are grouped by class (`CLASSES`). `python -m tests.test_hardening_second --count [ROOT
[ID ...]]` runs each case in a child process (60 s, 6 GiB of address space) against the tree at
ROOT and prints the clean count per class: how the "clean before" column of the issue's table
was measured. What cannot be a row here (a closed stdout, two writers at once, a build that
must succeed and leave its neighbours alone) is a test function further down.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import _hostile as h
from tests.test_bad_inputs import Case, run_case

G, T = "graphgen", "resnet-train"
OUT = ("-o", "{d}/out.onnx")
R = ("--out", "{d}/r")
TRAIN = ("--image-size", "8", "--synthetic-train", "32", "--synthetic-val", "32",
         "--batch-size", "32", "--workers", "0", "--quiet", "--epochs", "1")  # fmt: skip
MAX_MESSAGE = 600  # characters: a message names values, it does not print them whole
# Warnings Python does not show a command line's user by default.
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
BOMB = h.alias_bomb(9)  # 9**9 = 387M leaves in ~600 bytes
DIGITS_5000, DIGITS_4000 = "7" * 5000, "7" * 4000
PIXEL_BOMB = h.png_claiming(50_000, 50_000)  # 2.5 G pixels: past twice PIL's own limit
PIXELS_100M = h.png_claiming(10_000, 10_000)  # past PIL's warning limit (89 M)


def tiny_model(name: str, **changes: object) -> h.Maker:
    def make(d: Path) -> None:
        from graphgen.onnx_io import build_file

        build_file(h.TINY.replace(**changes) if changes else h.TINY, d / name, seed=1)

    return make


def quantized_model(name: str, edit: Callable[[onnx.ModelProto], None]) -> h.Maker:
    """The tiny graph quantized to int8, then hand-edited."""

    def make(d: Path) -> None:
        from graphgen.onnx_io import build
        from graphgen.quantize import quantize

        model = quantize(build(h.TINY, seed=1))
        edit(model)
        (d / name).write_bytes(model.SerializeToString())

    return make


def set_prop(key: str, value: str | None) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        props = {p.key: p.value for p in model.metadata_props}
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, props)

    return edit


def poison(tensor: str, value: float) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        t = h.initializer(model, tensor)
        array = onnx.numpy_helper.to_array(t).copy()
        array.flat[0] = value
        t.CopyFrom(onnx.numpy_helper.from_array(array, tensor))

    return edit


def int8_weights(model: onnx.ModelProto) -> None:
    """Float weights swapped for int8 ones, no Q/DQ node: quantized by hand, tagged float32."""
    for t in model.graph.initializer:
        if t.name.endswith("conv1.weight"):
            array = np.clip(np.rint(onnx.numpy_helper.to_array(t) * 100), -127, 127)
            t.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.int8), t.name))


def symbolic_size(model: onnx.ModelProto) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d in dims[2:]:
        d.dim_param = "S"


def fixed_size(size: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
            d.dim_value = size
        del model.graph.value_info[:]

    return edit


def identity_loop(model: onnx.ModelProto) -> None:
    """Two Identity nodes reading each other, fed to the pooling: an alias loop."""
    model.graph.node.append(onnx.helper.make_node("Identity", ["loop.b"], ["loop.a"], name="a"))
    model.graph.node.append(onnx.helper.make_node("Identity", ["loop.a"], ["loop.b"], name="b"))
    h.node(model, "avgpool").input[0] = "loop.a"


def matmul_head_loop(model: onnx.ModelProto) -> None:
    """The fc as MatMul + Add(bias), the Add reading its own output: a bias-add that never ends."""
    fc = h.node(model, "fc")
    weight = h.initializer(model, "fc.weight")
    w = onnx.numpy_helper.to_array(weight).T.copy()
    weight.CopyFrom(onnx.numpy_helper.from_array(w, "fc.weight"))
    model.graph.node.remove(fc)
    model.graph.node.append(
        onnx.helper.make_node("MatMul", ["avgpool", "fc.weight"], ["mm"], name="mm")
    )
    model.graph.node.append(
        onnx.helper.make_node("Add", ["logits", "fc.bias"], ["logits"], name="fc")
    )


def pads_from(op: str, value: np.ndarray) -> Callable[[onnx.ModelProto], None]:
    """Option A's Pad reads its pads from `op` of a stored constant (as torch.onnx computes
    them), not from a Constant: `ConstantOfShape([5e9])` is 40 GB from 8 bytes."""

    def edit(model: onnx.ModelProto) -> None:
        pads = h.node(model, "layer2.0.shortcut.pads")
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, "huge.shape"))
        inputs = ["huge.shape"] if op != "Range" else ["zero", "huge.shape", "one"]
        if op == "Range":
            for name, v in (("zero", 0), ("one", 1)):
                model.graph.initializer.append(onnx.numpy_helper.from_array(np.int64(v), name))
        pads.CopyFrom(onnx.helper.make_node(op, inputs, list(pads.output), name=pads.name))

    return edit


def safetensors_claiming(name: str, shape: list[int]) -> h.Maker:
    """A safetensors file whose header claims `shape` and holds 12 bytes."""

    def make(d: Path) -> None:
        header = json.dumps(
            {
                "conv1.weight": {
                    "dtype": "F32",
                    "shape": shape,
                    "data_offsets": [0, 4 * math.prod(shape)],
                }
            }
        )
        body = header.encode() + b" " * (-len(header) % 8)
        (d / name).write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 12)

    return make


def npz_claiming(name: str, member: str, shape: tuple[int, ...]) -> h.Maker:
    return h.chain(h.npy_header(f"{member}.npy", shape), lambda d: _zip(d, name, [f"{member}.npy"]))


def set_ints(node_name: str, attr: str, values: list[int]) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        h.attribute(h.node(model, node_name), attr).ints[:] = values

    return edit


def opset(version: int, domain: str = "") -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        del model.opset_import[:]
        model.opset_import.add(domain=domain, version=version)

    return edit


def bn_inputs(count: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        bn = h.node(model, "bn1")
        if count < len(bn.input):
            del bn.input[count:]
        else:
            bn.input.extend(["bn1.running_var"] * (count - len(bn.input)))

    return edit


def raw_short(model: onnx.ModelProto) -> None:
    t = h.initializer(model, "conv1.weight")
    t.raw_data = t.raw_data[:-4]


def float_data_short(model: onnx.ModelProto) -> None:
    t = h.initializer(model, "bn1.weight")
    t.ClearField("raw_data")
    t.float_data.extend([1.0, 1.0, 1.0])


def dims(tensor: str, new: list[int]) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        h.initializer(model, tensor).dims[:] = new

    return edit


def constant_dims(node_name: str, new: list[int]) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        h.attribute(h.node(model, node_name), "value").t.dims[:] = new

    return edit


def twice_made(model: onnx.ModelProto) -> None:
    """Two nodes make tensor `bn1`: not single static assignment."""
    h.node(model, "relu").output[0] = "bn1"
    h.node(model, "layer1.0.conv1").input[0] = "bn1"
    h.node(model, "layer1.0.add").input[1] = "bn1"


def typed_weight(dtype: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        t = h.initializer(model, "conv1.weight")
        array = onnx.numpy_helper.to_array(t)
        if dtype == onnx.TensorProto.STRING:
            text = [str(v).encode() for v in array.reshape(-1)]
            t.CopyFrom(onnx.helper.make_tensor(t.name, dtype, array.shape, text))
            return
        np_type = onnx.helper.tensor_dtype_to_np_dtype(dtype)
        t.CopyFrom(onnx.numpy_helper.from_array(array.astype(np_type), "conv1.weight"))

    return edit


def rename_block(weights: dict[str, np.ndarray]) -> None:
    for k in [k for k in weights if k.startswith("layer1.0.")]:
        weights[k.replace("layer1.0.", "layer1.1.")] = weights.pop(k)


def reshape(name: str, shape: tuple[int, ...]) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(weights: dict[str, np.ndarray]) -> None:
        weights[name] = np.ones(shape, np.float32)

    return edit


def nan_at(name: str) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(weights: dict[str, np.ndarray]) -> None:
        weights[name] = weights[name].copy()
        weights[name].flat[0] = np.nan

    return edit


def expect_file(name: str) -> h.Maker:
    def make(d: Path) -> None:
        x = np.zeros((2, 3, 8, 8), np.float32)
        np.savez(d / name, input=x, output=np.zeros((2, 10), np.float32))

    return make


def in_run_folder(d: Path) -> None:
    (d / "sub").mkdir()
    (d / "ln").symlink_to(d)


SPEC = h.text_file("s.yaml", "depth: 8\nimage_size: 8\n")
NPZ = h.state_dict("w.npz")
FOREIGN = h.edited_onnx("f.onnx", lambda m: None)
CALIB = h.image_folder("imgs", {"0.png": h.small_png(8), "1.png": h.small_png(8, seed=1)})
IMAGES = (
    "--dataset",
    "imagefolder",
    "--data",
    "{d}/images",
    "--depth",
    "8",
    "--image-size",
    "8",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "--quiet",
    "--epochs",
    "1",
)


def spec_case(cid: str, text: str, needle: str, *, cli: str = G, name: str = "s.yaml") -> Case:
    argv = ("build", "--spec", f"{{d}}/{name}", *OUT) if cli == G else (
        "--spec", f"{{d}}/{name}", *TRAIN, *R)  # fmt: skip
    return Case(cid, cli, argv, needle, (h.text_file(name, text),))


def imp(source: str, *extra: str) -> tuple[str, ...]:
    return ("import", f"{{d}}/{source}", *extra, *OUT)


def quant(*extra: str) -> tuple[str, ...]:
    return ("quantize", "{d}/m.onnx", *extra, *OUT)


# fmt: off
BLOWUPS: list[Case] = [
    # YAML alias bombs: the message must not format the value (9**9 leaves)
    spec_case("bomb-classes", f"depth: 20\nclasses: {BOMB}\n", "'classes'"),
    spec_case("bomb-block", f"depth: 20\nblock: {BOMB}\n", "'block'"),
    spec_case("bomb-layers", f"layers: {BOMB}\nwidths: [8]\n", "layers"),
    spec_case("bomb-name", f"depth: 20\nname: {BOMB}\n", "'name'"),
    spec_case("bomb-depth", f"depth: {BOMB}\n", "'depth'"),
    spec_case("bomb-size-limit", f"depth: 20\nsize_limit: {BOMB}\n", "size_limit"),
    spec_case("bomb-in-a-mapping", f"depth: 20\nstem: {{a: {BOMB}}}\n", "'stem'"),
    spec_case("bomb-dataset", f"depth: 20\ndataset: {BOMB}\n", "'dataset'"),
    spec_case("train-bomb-classes", f"depth: 8\nclasses: {BOMB}\n", "'classes'", cli=T),
    # files that never end, or are far larger than a spec
    Case("spec-dev-zero", G, ("build", "--spec", "/dev/zero", *OUT), "not a regular file"),
    Case("spec-dev-urandom", G, ("build", "--spec", "/dev/urandom", *OUT), "not a regular file"),
    Case("train-spec-dev-zero", T, ("--spec", "/dev/zero", *TRAIN, *R), "not a regular file"),
    Case("spec-link-to-dev-zero", G, ("build", "--spec", "{d}/z.yaml", *OUT),
         "not a regular file", (h.a_symlink("z.yaml", "/dev/zero"),)),
    Case("spec-100mb-sparse", G, ("build", "--spec", "{d}/s.yaml", *OUT), "larger than",
         (h.sparse_file("s.yaml", 100 * 2**20, b"depth: 20\n"),)),
    Case("spec-32mb-name", G, ("build", "--spec", "{d}/s.yaml", *OUT), "larger than",
         (h.big_text_file("s.yaml", "depth: 20\nname: ", b"a", 32 * 2**20),)),
    spec_case("spec-500k-name", "depth: 20\nname: " + "a" * 500_000 + "\n", "'name'"),
    spec_case("spec-500k-block", "depth: 20\nblock: " + "b" * 500_000 + "\n", "'block'"),
    spec_case("spec-100k-widths", "layers: [" + "1, " * 99_999 + "1]\nwidths: ["
              + "8, " * 99_999 + "-8]\n", "values"),
    # nesting and digits past what a parser or a message should take
    spec_case("spec-json-deep", '{"depth": ' + h.deep(100_000) + "}", "nested", name="s.json"),
    spec_case("spec-yaml-deep", "depth: " + h.deep(100_000) + "\n", "nested"),
    spec_case("spec-yaml-deep-mapping", "depth: " + "{a: " * 50_000 + "1" + "}" * 50_000,
              "nested"),
    spec_case("spec-json-5000-digits", f'{{"depth": {DIGITS_5000}}}', "digits", name="s.json"),
    spec_case("spec-yaml-5000-digits", f"depth: 20\nclasses: {DIGITS_5000}\n", "digits"),
    spec_case("spec-yaml-4000-digits", f"depth: 20\nclasses: {DIGITS_4000}\n", "digits"),
    spec_case("spec-json-4000-digit-width", f'{{"layers": [1], "widths": [{DIGITS_4000}]}}',
              "digits", name="s.json"),
    spec_case("train-spec-5000-digits", f"depth: 8\nclasses: {DIGITS_5000}\n", "digits", cli=T),
    # weights files and arrays whose headers claim more than any machine has
    Case("params-sparse-64g", G, imp("big.params"), "not an MXNet NDArray file",
         (h.sparse_file("big.params", 64 * 2**30),)),
    Case("params-64g-array", G, imp("big.params"), "values",
         (h.sparse_file("big.params", 64 * 2**30 + 100, h.params_head(1) + h.params_array(
             np.zeros(0, np.float32), shape=(2**34,))),)),
    Case("npz-header-huge", G, imp("w.npz"), "w.npz",
         (h.chain(h.npy_header("conv1.weight.npy", (10**6, 10**6)),
                  lambda d: _zip(d, "w.npz", ["conv1.weight.npy"])),)),
    Case("calib-npy-header-huge", G, quant("--calibration-data", "{d}/c.npy"), "c.npy",
         (tiny_model("m.onnx"), h.npy_header("c.npy", (10**9, 8, 8, 3), "|u1"))),
    Case("calib-npy-header-huge-float", G, quant("--calibration-data", "{d}/c.npy"), "c.npy",
         (tiny_model("m.onnx"), h.npy_header("c.npy", (10**7, 3, 8, 8), "<f8", b"\0" * 64))),
    Case("calib-images-1e9", G, quant("--calibration-images", "1000000000"),
         "calibration images", (tiny_model("m.onnx"),)),
    Case("import-image-size-100000", G, imp("w.npz", "--image-size", "100000"), "past the limit",
         (NPZ,)),
    Case("import-params-image-size-100000", G, imp("g.params", "--image-size", "100000"),
         "past the limit", (h.gluon_params("g.params"),)),
    Case("import-onnx-symbolic-100000", G, imp("f.onnx", "--image-size", "100000"),
         "past the limit", (h.edited_onnx("f.onnx", symbolic_size),)),
    Case("import-onnx-fixed-100000", G, imp("f.onnx"), "past the limit",
         (h.edited_onnx("f.onnx", fixed_size(100_000)),)),
    Case("expect-npz-header-huge", G, imp("w.npz", "--expect", "{d}/e.npz"), "e.npz",
         (NPZ, npz_claiming("e.npz", "input", (10**5, 3, 10**5, 10**5)))),
    Case("inject-npz-header-huge", G, ("inject", "{d}/m.onnx", "--weights", "{d}/w.npz", *OUT),
         "w.npz", (tiny_model("m.onnx"), npz_claiming("w.npz", "fc.weight", (10**6, 10**6)))),
    Case("safetensors-header-huge", G, imp("w.safetensors"), "w.safetensors",
         (safetensors_claiming("w.safetensors", [10**6, 10**6]),)),
    Case("import-pads-from-constant-of-shape", G, imp("f.onnx"), "ConstantOfShape",
         (h.edited_onnx("f.onnx", pads_from("ConstantOfShape", np.array([5 * 10**9]))),)),
    Case("import-pads-from-range", G, imp("f.onnx"), "Range",
         (h.edited_onnx("f.onnx", pads_from("Range", np.array(10**12))),)),
    # images whose headers claim billions of pixels
    Case("calib-png-bomb", G, quant("--calibration-data", "{d}/imgs"), "pixels",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"0.png": h.small_png(8),
                                                        "bomb.png": PIXEL_BOMB}))),
    Case("calib-png-100m-pixels", G, quant("--calibration-data", "{d}/imgs"), "pixels",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"0.png": h.small_png(8),
                                                        "big.png": PIXELS_100M}))),
    Case("calib-bmp-bomb", G, quant("--calibration-data", "{d}/imgs"), "pixels",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"bomb.bmp": h.bmp_bytes(
             30_000, 30_000, pixels=b"\0" * 64)}))),
    Case("train-imagefolder-png-bomb", T, (*IMAGES, *R), "pixels",
         (h.imagefolder_tree("images", {"train/a/bomb.png": PIXEL_BOMB}),)),
    Case("train-imagefolder-100m-pixels", T, (*IMAGES, *R), "pixels",
         (h.imagefolder_tree("images", {"val/b/big.png": PIXELS_100M}),)),
]

HANGS: list[Case] = [
    # foreign graphs with cycles: refused before any walk
    Case("import-cycle-units", G, imp("f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", lambda m: h.cycle(m, "relu", "layer1.0.relu")),)),
    Case("import-cycle-identity", G, imp("f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", identity_loop),)),
    Case("import-cycle-self", G, imp("f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", lambda m: h.cycle(m, "conv1", "conv1")),)),
    Case("import-cycle-slice", G, imp("f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", lambda m: h.cycle(m, "layer2.0.shortcut.subsample",
                                                    "layer2.0.shortcut.subsample")),)),
    Case("import-cycle-bias-add", G, imp("f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", matmul_head_loop),)),
    Case("import-cycle-shortcut", G, imp("f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", lambda m: h.cycle(m, "layer2.0.shortcut.subsample",
                                                    "layer3.0.relu")),)),
    Case("info-cycle-units", G, ("info", "{d}/f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", lambda m: h.cycle(m, "relu", "layer1.0.relu")),)),
    Case("info-cycle-identity", G, ("info", "{d}/f.onnx"), "cycle",
         (h.edited_onnx("f.onnx", identity_loop),)),
    Case("quantize-cycle", G, quant(), "cycle",
         (h.edited_onnx("m.onnx", lambda m: h.cycle(m, "relu", "layer1.0.relu"),
                        graphgen=True),)),
    # named pipes: an open() that waits for a writer forever
    Case("spec-fifo", G, ("build", "--spec", "{d}/p.yaml", *OUT), "not a regular file",
         (h.a_fifo("p.yaml"),)),
    Case("train-spec-fifo", T, ("--spec", "{d}/p.yaml", *TRAIN, *R), "not a regular file",
         (h.a_fifo("p.yaml"),)),
    Case("import-expect-fifo", G, imp("w.npz", "--expect", "{d}/e.npz"), "e.npz",
         (NPZ, h.a_fifo("e.npz"))),
    Case("train-imagefolder-fifo", T, (*IMAGES, *R), "x.png",
         (h.imagefolder_tree("images", {}), h.a_fifo("images/train/a/x.png"))),
    Case("train-resume-config-fifo", T, ("--resume", "{d}/run"), "config.json",
         (lambda d: (d / "run").mkdir(), h.a_fifo("run/config.json"))),
    Case("calib-fifo", G, quant("--calibration-data", "{d}/c.npy"), "c.npy",
         (tiny_model("m.onnx"), h.a_fifo("c.npy"))),
    Case("train-imagefolder-dev-zero", T, (*IMAGES, *R), "z.png",
         (h.imagefolder_tree("images", {}), h.a_symlink("images/val/b/z.png", "/dev/zero"))),
    Case("calib-folder-only-dev-zero", G, quant("--calibration-data", "{d}/imgs"), "no readable",
         (tiny_model("m.onnx"), h.a_symlink("imgs/z.png", "/dev/zero"))),
]

WRITES: list[Case] = [
    # -o naming (or resolving to) one of the command's own inputs
    Case("build-o-spec", G, ("build", "--spec", "{d}/s.yaml", "-o", "{d}/s.yaml"),
         "is the input", (SPEC,)),
    Case("build-o-spec-dotdot", G, ("build", "--spec", "{d}/s.yaml", "-o", "{d}/sub/../s.yaml"),
         "is the input", (SPEC, in_run_folder)),
    Case("build-o-spec-linked-folder", G, ("build", "--spec", "s.yaml", "-o", "{d}/ln/s.yaml"),
         "is the input", (SPEC, in_run_folder)),
    Case("import-o-source-onnx", G, ("import", "{d}/f.onnx", "-o", "{d}/f.onnx"),
         "is the input", (FOREIGN,)),
    Case("import-o-source-npz", G, ("import", "{d}/w.npz", "-o", "{d}/w.npz"), "is the input",
         (NPZ,)),
    Case("import-o-source-params", G, ("import", "{d}/g.params", "-o", "{d}/ln/g.params"),
         "is the input", (h.gluon_params("g.params"), in_run_folder)),
    Case("import-o-expect", G, ("import", "{d}/w.npz", "--expect", "{d}/e.npz", "-o",
                                "{d}/e.npz"), "is the input", (NPZ, expect_file("e.npz"))),
    Case("import-o-source-data", G, ("import", "{d}/x.onnx", "-o", "{d}/x.onnx.data"),
         "is the input", (h.with_external("x.onnx", "0"),)),
    Case("inject-o-model", G, ("inject", "{d}/m.onnx", "--weights", "{d}/w.npz", "-o",
                               "{d}/m.onnx"), "is the input", (tiny_model("m.onnx"), NPZ)),
    Case("inject-o-weights", G, ("inject", "{d}/m.onnx", "--weights", "{d}/w.npz", "-o",
                                 "{d}/sub/../w.npz"), "is the input",
         (tiny_model("m.onnx"), NPZ, in_run_folder)),
    Case("quantize-o-model", G, ("quantize", "{d}/m.onnx", "-o", "{d}/m.onnx"), "is the input",
         (tiny_model("m.onnx"),)),
    Case("quantize-o-model-linked-folder", G, ("quantize", "{d}/m.onnx", "-o", "{d}/ln/m.onnx"),
         "is the input", (tiny_model("m.onnx"), in_run_folder)),
    Case("quantize-o-calibration-npy", G, ("quantize", "{d}/m.onnx", "--calibration-data",
                                           "{d}/c.npy", "-o", "{d}/c.npy"), "is the input",
         (tiny_model("m.onnx"), h.npy_array("c.npy", np.zeros((2, 8, 8, 3), np.uint8)))),
    Case("quantize-o-calibration-image", G, ("quantize", "{d}/m.onnx", "--calibration-data",
                                             "{d}/imgs", "-o", "{d}/imgs/0.png"),
         "--calibration-data", (tiny_model("m.onnx"), CALIB)),
    Case("train-export-o-spec", T, ("--spec", "{d}/s.yaml", *TRAIN, *R, "--export",
                                    "{d}/s.yaml"), "is the input", (SPEC,)),
    Case("train-export-run-config", T, ("--depth", "8", *TRAIN, *R, "--export",
                                        "{d}/r/config.json"), "config.json"),
    Case("train-export-run-checkpoint", T, ("--depth", "8", *TRAIN, *R, "--export",
                                            "{d}/r/last.pt"), "last.pt"),
]

BROKEN: list[Case] = [
    # quantize: check what is written, as build does
    Case("quantize-calibration-3e38", G, quant("--calibration-data", "{d}/c.npy"), "finite",
         (tiny_model("m.onnx"), h.npy_array("c.npy", np.full((2, 8, 8, 3), 3e38, np.float32)))),
    Case("quantize-calibration-float64-1e39", G, quant("--calibration-data", "{d}/c.npy"), "Inf",
         (tiny_model("m.onnx"), h.npy_array("c.npy", np.full((2, 3, 8, 8), 1e39)))),
    Case("quantize-int8-retagged-float32", G, quant(), "already quantized",
         (quantized_model("m.onnx", set_prop("graphgen.dtype", "float32")),)),
    Case("quantize-int8-untagged", G, quant(), "already quantized",
         (quantized_model("m.onnx", set_prop("graphgen.dtype", None)),)),
    Case("quantize-int8-weights-no-qdq", G, quant(), "conv1.weight",
         (h.edited_onnx("m.onnx", int8_weights, graphgen=True),)),
    Case("quantize-nan-weight", G, quant(), "layer1.0.conv1.weight",
         (h.edited_onnx("m.onnx", poison("layer1.0.conv1.weight", np.nan), graphgen=True),)),
    Case("quantize-inf-weight", G, quant(), "fc.weight",
         (h.edited_onnx("m.onnx", poison("fc.weight", np.inf), graphgen=True),)),
    Case("quantize-huge-weight", G, quant(), "conv1.weight",
         (h.edited_onnx("m.onnx", poison("conv1.weight", 3e38), graphgen=True),)),
    Case("inject-nan-npz", G, ("inject", "{d}/m.onnx", "--weights", "{d}/w.npz", *OUT),
         "'fc.bias'", (tiny_model("m.onnx"), h.state_dict("w.npz", nan_at("fc.bias")))),
]

FOREIGN_DATA: list[Case] = [
    # .params: shapes past int64, NaN weights
    Case("params-shape-overflow", G, imp("x.params"), "values",
         (h.params_file("x.params", [h.params_array(np.zeros(4, np.float32),
                                                    shape=(2**32, 2**32, 4))], ["w"]),)),
    Case("params-shape-wraps-to-small", G, imp("x.params"), "values",
         (h.params_file("x.params", [h.params_array(np.zeros(1, np.float32),
                                                    shape=(2**32, 2**32, 2**32, 2**32))],
                        ["w"]),)),
    Case("params-nan-weight", G, imp("g.params"), "features.0.weight",
         (h.gluon_params("g.params", poison="features.0.weight"),)),
    Case("params-inf-bn", G, imp("g.params", "--expect", "{d}/e.npz"), "running_var",
         (h.gluon_params("g.params", poison="features.1.running_var", value=np.inf),
          expect_file("e.npz"))),
    # ONNX: opsets, attributes and inputs of the wrong length, initializers that lie
    Case("onnx-opset-1", G, imp("f.onnx"), "opset 1", (h.edited_onnx("f.onnx", opset(1)),)),
    Case("onnx-opset-6", G, imp("f.onnx"), "opset 6", (h.edited_onnx("f.onnx", opset(6)),)),
    Case("onnx-opset-99", G, imp("f.onnx"), "opset 99", (h.edited_onnx("f.onnx", opset(99)),)),
    Case("onnx-no-default-opset", G, imp("f.onnx"), "opset",
         (h.edited_onnx("f.onnx", opset(1, "com.example")),)),
    Case("onnx-kernel-one-value", G, imp("f.onnx"), "conv1",
         (h.edited_onnx("f.onnx", set_ints("conv1", "kernel_shape", [3])),)),
    Case("onnx-strides-one-value", G, imp("f.onnx"), "conv1",
         (h.edited_onnx("f.onnx", set_ints("conv1", "strides", [1])),)),
    Case("onnx-pads-two-values", G, imp("f.onnx"), "conv1",
         (h.edited_onnx("f.onnx", set_ints("conv1", "pads", [1, 1])),)),
    Case("onnx-kernel-empty", G, imp("f.onnx"), "conv1",
         (h.edited_onnx("f.onnx", set_ints("layer1.0.conv1", "kernel_shape", [])),)),
    Case("onnx-bn-3-inputs", G, imp("f.onnx"), "bn1", (h.edited_onnx("f.onnx", bn_inputs(3)),)),
    Case("onnx-bn-6-inputs", G, imp("f.onnx"), "bn1", (h.edited_onnx("f.onnx", bn_inputs(6)),)),
    Case("onnx-raw-data-short", G, imp("f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", raw_short),)),
    Case("onnx-float-data-short", G, imp("f.onnx"), "bn1.weight",
         (h.edited_onnx("f.onnx", float_data_short),)),
    Case("onnx-dims-huge", G, imp("f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", dims("conv1.weight", [2**40, 3, 3, 3])),)),
    Case("onnx-dims-overflow", G, imp("f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", dims("conv1.weight", [2**62, 2**62, 3, 3])),)),
    Case("onnx-dims-negative", G, imp("f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", dims("conv1.weight", [-16, 3, 3, 3])),)),
    Case("onnx-string-weight", G, imp("f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", typed_weight(onnx.TensorProto.STRING)),)),
    Case("onnx-int64-weight", G, imp("f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", typed_weight(onnx.TensorProto.INT64)),)),
    Case("onnx-twice-made", G, imp("f.onnx"), "bn1", (h.edited_onnx("f.onnx", twice_made),)),
    Case("onnx-constant-huge-dims", G, imp("f.onnx"), "layer2.0.shortcut.pads",
         (h.edited_onnx("f.onnx", constant_dims("layer2.0.shortcut.pads", [2**62, 2**62])),)),
    Case("info-dims-huge", G, ("info", "{d}/f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", dims("conv1.weight", [2**40, 3, 3, 3])),)),
    Case("info-raw-data-short", G, ("info", "{d}/f.onnx"), "conv1.weight",
         (h.edited_onnx("f.onnx", raw_short),)),
    Case("onnx-nan-weight", G, imp("f.onnx"), "layer2.0.conv2.weight",
         (h.edited_onnx("f.onnx", poison("layer2.0.conv2.weight", np.nan)),)),
    Case("import-ext-offset-text", G, imp("x.onnx"), "offset",
         (h.with_external("x.onnx", "abc"),)),
    Case("import-ext-offset-negative", G, imp("x.onnx"), "offset",
         (h.with_external("x.onnx", "-1"),)),
    Case("import-ext-length-past-end", G, imp("x.onnx"), "external data",
         (h.with_external("x.onnx", "0", str(2**40)),)),
    Case("import-ext-location-outside", G, imp("x.onnx"), "outside",
         (h.with_external("x.onnx", "0"), lambda d: _relocate(d, "x.onnx", "../x.onnx.data"))),
    Case("info-ext-offset-text", G, ("info", "{d}/x.onnx"), "offset",
         (h.with_external("x.onnx", "abc"),)),
    Case("info-ext-offset-negative", G, ("info", "{d}/x.onnx"), "offset",
         (h.with_external("x.onnx", "-1"),)),
    Case("info-ext-length-text", G, ("info", "{d}/x.onnx"), "length",
         (h.with_external("x.onnx", "0", "many"),)),
    Case("inject-ext-offset-text", G, ("inject", "{d}/x.onnx", "--weights", "{d}/w.npz", *OUT),
         "offset", (h.with_external("x.onnx", "abc", graphgen=True), NPZ)),
    Case("quantize-ext-offset-negative", G, ("quantize", "{d}/x.onnx", *OUT), "offset",
         (h.with_external("x.onnx", "-1", graphgen=True),)),
    # state_dicts of odd shapes
    Case("sd-stem-1d", G, imp("w.npz"), "conv1.weight",
         (h.state_dict("w.npz", reshape("conv1.weight", (16,))),)),
    Case("sd-stem-2d", G, imp("w.npz"), "conv1.weight",
         (h.state_dict("w.npz", reshape("conv1.weight", (16, 27))),)),
    Case("sd-fc-scalar", G, imp("w.npz"), "fc.weight",
         (h.state_dict("w.npz", reshape("fc.weight", ())),)),
    Case("sd-stage-without-unit-0", G, imp("w.npz"), "layer1",
         (h.state_dict("w.npz", rename_block),)),
    Case("sd-stage-conv-1d", G, imp("w.npz"), "layer2.0.conv1.weight",
         (h.state_dict("w.npz", reshape("layer2.0.conv1.weight", ())),)),
    Case("sd-nan", G, imp("w.npz"), "layer3.0.bn2.running_var",
         (h.state_dict("w.npz", nan_at("layer3.0.bn2.running_var")),)),
    # images that are not what their headers say
    Case("calib-bmp-truncated", G, quant("--calibration-data", "{d}/imgs"), "c.bmp",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"0.png": h.small_png(8),
                                                        "c.bmp": h.bmp_bytes(8, 8, pixels=b"\0" * 9)}))),
    Case("calib-bmp-zero-bits", G, quant("--calibration-data", "{d}/imgs"), "c.bmp",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"0.png": h.small_png(8),
                                                        "c.bmp": h.bmp_bytes(8, 8, bpp=0)}))),
    Case("calib-ppm-maxval-0", G, quant("--calibration-data", "{d}/imgs"), "c.ppm",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"0.png": h.small_png(8),
                                                        "c.ppm": b"P6 8 8 0\n" + b"\0" * 192}))),
    Case("calib-ppm-truncated", G, quant("--calibration-data", "{d}/imgs"), "c.ppm",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"0.png": h.small_png(8),
                                                        "c.ppm": b"P6 8 8 255\n" + b"\0" * 7}))),
    Case("calib-ppm-huge", G, quant("--calibration-data", "{d}/imgs"), "pixels",
         (tiny_model("m.onnx"), h.image_folder("imgs", {"c.ppm": b"P6 100000 100000 255\n"}))),
    Case("calib-npy-complex", G, quant("--calibration-data", "{d}/c.npy"), "complex",
         (tiny_model("m.onnx"), h.npy_array("c.npy", np.zeros((2, 8, 8, 3), np.complex64)))),
    Case("calib-npy-structured", G, quant("--calibration-data", "{d}/c.npy"), "c.npy",
         (tiny_model("m.onnx"), h.npy_array("c.npy", np.zeros((2, 8, 8, 3), "i4,i4")))),
    # config.json (--resume) and specs: nesting, digits, duplicated keys
    Case("train-resume-config-deep", T, ("--resume", "{d}/run"), "nested",
         (h.run_config("run", lambda t: t.replace('"seed": 0', '"seed": ' + h.deep(100_000))),)),
    Case("train-resume-config-5000-digits", T, ("--resume", "{d}/run"), "digits",
         (h.run_config("run", lambda t: t.replace('"seed": 0', '"seed": ' + DIGITS_5000)),)),
    Case("train-resume-config-4000-digit-epochs", T, ("--resume", "{d}/run"), "digits",
         (h.run_config("run", lambda t: t.replace('"epochs": 1', '"epochs": ' + DIGITS_4000)),)),
    Case("train-resume-config-100mb", T, ("--resume", "{d}/run"), "larger than",
         (lambda d: (d / "run").mkdir(), h.sparse_file("run/config.json", 100 * 2**20, b"{"))),
    Case("train-resume-config-duplicate-key", T, ("--resume", "{d}/run"), "'seed'",
         (h.run_config("run", lambda t: t.replace('"seed": 0', '"seed": 0, "seed": 1')),)),
    spec_case("spec-yaml-duplicate-key", "depth: 20\nclasses: 10\ndepth: 56\n",
              "key 'depth' appears twice (lines 1 and 3)"),
    spec_case("spec-yaml-duplicate-nested-key", "depth: 8\nsize_limit: {params: 5,\n"
              "  params: 1e9}\n", "key 'params' appears twice (lines 2 and 3)"),
    spec_case("spec-json-duplicate-key", '{"depth": 20,\n "depth": 56}',
              "key 'depth' appears twice", name="s.json"),
    spec_case("train-spec-duplicate-key", "depth: 8\nimage_size: 8\nimage_size: 16\n",
              "key 'image_size' appears twice (lines 2 and 3)", cli=T),
]
# fmt: on

CLASSES: dict[str, list[Case]] = {
    "resource blow-ups": BLOWUPS,
    "hangs": HANGS,
    "writes where they should not": WRITES,
    "broken output with exit 0": BROKEN,
    "unguarded foreign data": FOREIGN_DATA,
}
CASES: list[Case] = [c for cases in CLASSES.values() for c in cases]


def _zip(d: Path, name: str, members: list[str]) -> None:
    import zipfile

    with zipfile.ZipFile(d / name, "w") as z:
        for member in members:
            z.write(d / member, member)
            (d / member).unlink()


def _relocate(d: Path, name: str, location: str) -> None:
    model = onnx.load(str(d / name), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    (d / name).write_bytes(model.SerializeToString())


def check_case(case: Case, d: Path) -> str | None:
    """What is wrong with one case (run_case's verdict, and a message past MAX_MESSAGE), or
    None."""
    with warnings.catch_warnings(record=True) as caught, h.native_stderr() as native:
        warnings.simplefilter("default")  # what a command line shows
        _, text, problem = run_case(case, d)
    if problem is None and native().strip():  # a C++ library's log: a second line
        problem = f"written to stderr by a library: {native().strip()[:200]}"
    shown = [w for w in caught if not issubclass(w.category, QUIET_WARNINGS)]
    if problem is None and shown:  # a second line on stderr, when run as a command
        problem = f"a warning: {shown[0].category.__name__}: {shown[0].message}"
    if problem is None and len(text.strip()) > MAX_MESSAGE:
        problem = f"a message of {len(text.strip()):,} characters"
    return problem if problem is None else f"{problem}; stderr: {text[-300:]}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    problem = check_case(case, tmp_path)
    assert problem is None, problem


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


# --- counting clean cases on any tree ---------------------------------------------------------


def _count(root: Path, ids: list[str], timeout: float = 60.0) -> None:
    """Each case in a child process against the tree at `root` (its packages first on the path,
    this file's helpers from here), limited in time and address space; the clean count per
    class."""
    import resource
    import tempfile

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    here = Path(__file__).resolve().parents[1]
    totals = []
    for klass, cases in CLASSES.items():
        chosen = [c for c in cases if not ids or c.id in ids]
        clean = loose = 0
        for case in chosen:
            with tempfile.TemporaryDirectory() as d:
                code = (
                    f"import sys; sys.path[:0] = [{str(root)!r}]\n"
                    "import tests\n"
                    f"tests.__path__.insert(0, {str(here / 'tests')!r})\n"
                    "import tests.test_hardening_second as b\n"
                    f"case = next(c for c in b.CASES if c.id == {case.id!r})\n"
                    f"problem = b.check_case(case, __import__('pathlib').Path({d!r}))\n"
                    "print((problem or 'clean').replace(chr(10), ' | ')[:400])\n"
                )
                try:
                    done = subprocess.run(
                        [sys.executable, "-c", code],
                        capture_output=True,
                        text=True,
                        timeout=timeout,
                        cwd=d,
                        preexec_fn=limit,
                    )
                    verdict = (done.stdout.strip().splitlines() or [
                        f"died ({done.returncode}): {done.stderr.strip()[-200:]}"
                    ])[-1]  # fmt: skip
                except subprocess.TimeoutExpired:
                    verdict = f"hung past {timeout:.0f} s"
            clean += verdict == "clean"
            # one line and exit 2, nothing changed, but not saying what is wrong
            loose += verdict == "clean" or verdict.startswith("message lacks")
            print(f"  {case.id:40s} {verdict[:200]}", flush=True)
        totals.append((klass, len(chosen), clean, loose))
        print(f"{klass}: {clean} of {len(chosen)} clean ({loose} one line)", flush=True)
    print("| class | cases | clean | one line, exit 2, other message |")
    for klass, n, clean, loose in totals:
        print(f"| {klass} | {n} | {clean} | {loose - clean} |")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--count":  # --count [ROOT [CASE_ID ...]]
        root = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1]).resolve()
        _count(root, sys.argv[3:])


# --- legal names that break a run: a closed stdout, a name that is not UTF-8 ------------------

ROOT = Path(__file__).resolve().parents[1]
PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell shows for `... | head -c 10` cutting it short


def _closed_stdout(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a command line whose stdout is a pipe nobody reads any more (`| head -c 10` after
    its ten bytes): the read end is closed before the command writes a byte."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-c", RUN_CLI, *argv], stdout=write, stderr=subprocess.PIPE,
            cwd=cwd, env=_env(), timeout=300,
        )  # fmt: skip
    finally:
        os.close(write)


# The console scripts' own entry point: `sys.exit(main())`, with what Python does at exit.
RUN_CLI = """
import sys
cli, *argv = sys.argv[1:]
module = {"graphgen": "graphgen.cli", "resnet-train": "train.cli",
          "bench-runtimes": "runtimes.cli"}[cli]
sys.argv = [cli, *argv]
sys.exit(__import__(module, fromlist=["main"]).main())
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(ROOT)
    return env | extra


CLOSED_STDOUT = [
    ["graphgen", "info", "--json", "m.onnx"],
    ["graphgen", "info", "m.onnx"],
    ["graphgen", "build", "--depth", "8", "-o", "b.onnx", "--json"],
    ["resnet-train", "--help"],
    ["bench-runtimes", "list"],
]


@pytest.mark.parametrize("argv", CLOSED_STDOUT, ids=[" ".join(a) for a in CLOSED_STDOUT])
def test_a_closed_stdout_ends_the_command_quietly(argv: list[str], tmp_path: Path) -> None:
    h.edited_onnx("m.onnx", lambda m: None, graphgen=True)(tmp_path)
    done = _closed_stdout(argv, tmp_path)
    assert done.stderr.decode() == ""  # no traceback, no "Exception ignored"
    # run_main's 141; rich's own handler (tables, `list`) exits 1; argparse's --help ignores
    # write errors and exits 0. Python's failed flush at exit would be 120, with a message.
    assert done.returncode in (PIPE_CLOSED, 1, 0)


def test_a_name_that_is_not_utf8_builds_imports_and_prints(tmp_path: Path) -> None:
    """`$'\\xff.onnx'` is a legal Linux file name; printing it (a strict UTF-8 stdout), putting
    it in the metadata and checking the file it names must not fail the command."""
    name, out = os.fsdecode(b"\xff.onnx"), os.fsdecode(b"\xfe.onnx")
    env = _env(PYTHONIOENCODING="utf-8:strict", PYTHONUTF8="0", LC_ALL="C")
    for argv in (
        ["graphgen", "build", "--depth", "8", "--image-size", "8", "-o", name],
        ["graphgen", "info", name],
        ["graphgen", "import", name, "-o", out],
        ["graphgen", "quantize", name, "-o", os.fsdecode(b"\xfd.onnx")],
    ):
        done = subprocess.run(
            [sys.executable, "-c", RUN_CLI, *argv], capture_output=True, cwd=tmp_path, env=env,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    names = sorted(os.fsencode(p.name) for p in tmp_path.iterdir())
    assert names == [b"\xfd.onnx", b"\xfe.onnx", b"\xff.onnx"]
    model = onnx.load(str(tmp_path / out))
    assert "\ufffd.onnx" in {p.value for p in model.metadata_props}  # the name, as text


# --- writes where they should not: what a build must leave alone ------------------------------


def test_a_build_over_a_foreign_file_leaves_the_files_it_names(tmp_path: Path) -> None:
    """Replacing a foreign .onnx whose external data entry names another file of the folder
    must not remove that file: only graphgen's own data files (`NAME.<hash>.data`) go."""
    from graphgen.cli import main

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    model = h.tiny_onnx()
    h.external(h.initializer(model, "conv1.weight"), "victim.txt", "0", "7")
    (tmp_path / "t.onnx").write_bytes(model.SerializeToString())
    assert main(["build", "--depth", "8", "--image-size", "8", "-o", str(tmp_path / "t.onnx")]) == 0
    assert victim.read_text() == "keep me"
    onnx.checker.check_model(str(tmp_path / "t.onnx"), full_check=True)


def test_a_planted_lock_link_is_not_followed(tmp_path: Path, capsys) -> None:
    """The output's lock file planted as a link to another file: the build refuses in one line
    and the file it points at is not written."""
    from graphgen.cli import main

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / ".m.onnx.lock").symlink_to(victim)
    assert main(["build", "--depth", "8", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ".m.onnx.lock" in err, err
    assert victim.read_text() == "keep me" and not (tmp_path / "m.onnx").exists()


# --- two writers of one output ----------------------------------------------------------------

# A graphgen command that stops, holding its output's lock, just before it writes: until the
# test makes the file `go` beside the output.
HELD = """
import os, sys, time
from pathlib import Path
import graphgen.onnx_io as io
real = io.write_streamed
def held(skeleton, arrays, path, **kwargs):
    go = Path(path).parent / "go"
    while not go.exists():
        time.sleep(0.01)
    return real(skeleton, arrays, path, **kwargs)
io.write_streamed = held
from graphgen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _lock_held_by(lock: Path, proc: subprocess.Popen[bytes]) -> None:
    from resnet_common.locks import holder_of

    deadline = time.monotonic() + 300  # only keeps a broken child from hanging the suite
    while holder_of(lock) != proc.pid:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the first writer never took the lock"
        time.sleep(0.01)


WRITERS = {
    "build": ["build", "--depth", "8", "--image-size", "8", "-o", "m.onnx"],
    "import": ["import", "src.onnx", "-o", "m.onnx"],
}


@pytest.mark.parametrize(("first", "second"), [("build", "build"), ("import", "import"),
                                                ("build", "import")])  # fmt: skip
def test_two_writers_of_one_output(first: str, second: str, tmp_path: Path) -> None:
    """Two real processes write one -o: the second is refused in one line naming the first,
    writes nothing, and the first writes its whole file."""
    h.edited_onnx("src.onnx", lambda m: None)(tmp_path)
    one = subprocess.Popen(
        [sys.executable, "-c", HELD, *WRITERS[first]], cwd=tmp_path, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _lock_held_by(tmp_path / ".m.onnx.lock", one)
        two = subprocess.run(
            [sys.executable, "-c", RUN_CLI, "graphgen", *WRITERS[second]], cwd=tmp_path,
            env=_env(), capture_output=True, timeout=300,
        )  # fmt: skip
        err = two.stderr.decode()
        assert two.returncode == 2 and len(err.strip().splitlines()) == 1, err
        assert f"output m.onnx is in use by pid {one.pid}" in err
        assert not (tmp_path / "m.onnx").exists()
        (tmp_path / "go").touch()
        out, err = one.communicate(timeout=300)
        assert one.returncode == 0, err.decode()
    finally:
        if one.poll() is None:
            one.kill()
            one.wait()
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "m.onnx", "src.onnx"]


def test_a_killed_writers_lock_frees_the_output(tmp_path: Path) -> None:
    """SIGKILL the first writer while it holds the lock: the kernel drops the lock, the next
    build writes the file and clears the lock file the killed one left."""
    from graphgen.cli import main

    one = subprocess.Popen(
        [sys.executable, "-c", HELD, *WRITERS["build"]], cwd=tmp_path, env=_env(),
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _lock_held_by(tmp_path / ".m.onnx.lock", one)
    finally:
        one.kill()
        one.wait()
    assert (tmp_path / ".m.onnx.lock").exists()
    assert main(["build", "--depth", "8", "--image-size", "8", "-o", str(tmp_path / "m.onnx")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
