"""graphgen import of MXNet Gluon `.params` (no MXNet here): MXNet's own outputs are the truth.

The fixtures (tests/fixtures/gluon/, made by scripts/make-gluon-fixtures.sh in an MXNet 1.9.1
side venv) are small Gluon ResNetV1/V2 nets of both block types with random weights, non-zero
conv biases and BN statistics far from identity, saved with save_parameters and export, and
MXNet's outputs on seeded inputs: `--expect` checks against those. Without them (and without
MXNet, which `--arch gluon:MODEL` needs) an import checks names and shapes only, and says so.
"""

import importlib.util
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest

from graphgen.cli import main
from graphgen.errors import GraphError
from graphgen.importers.common import rel_l2, run_onnx
from graphgen.importers.gluon import import_gluon
from graphgen.importers.mxnet_params import ParamsError, read_params
from graphgen.plan import expand
from resnet_common.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "gluon"
NETS = ["v1_basic", "v1_bottleneck", "v2_basic", "v2_bottleneck"]
FILES = [f"{net}{style}.params" for net in NETS for style in ("", "-0000")]


def _stride(name: str) -> str:
    """Where the fixture's bottlenecks stride, as Gluon's model zoo builds them (the file cannot
    show it: import asks for it)."""
    return "1x1" if name.startswith("v1") else "3x3"


def _expected(name: str):
    data = np.load(FIXTURES / f"{name.split('-')[0].removesuffix('.params')}.npz")
    return data["input"], data["output"]


@pytest.mark.parametrize("name", FILES)
def test_import_matches_mxnet_outputs(name, tmp_path, capsys):
    out = tmp_path / "imported.onnx"
    expect = FIXTURES / f"{name.split('-')[0].removesuffix('.params')}.npz"
    args = ["import", str(FIXTURES / name), "--expect", str(expect), "-o", str(out)]
    assert main([*args, "--stride-at", _stride(name)]) == 0
    x, y = _expected(name)
    assert rel_l2(run_onnx(str(out), x), y) < 1e-5
    printed = capsys.readouterr().out
    assert "verified: rel. L2 " in printed and f"against {expect.name} (stored outputs)" in printed
    version = name[1]
    assert (
        f"gluon v{version} ({'export' if '-0000' in name else 'save_parameters'} names)" in printed
    )
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["graphgen.import.checked"] == f"expect:{expect.name}"
    assert meta["graphgen.classes"] == "5"
    assert meta["graphgen.normalize_mean"] == "[0.485, 0.456, 0.406]"


@pytest.mark.parametrize("net", NETS)
def test_both_name_styles_give_the_same_weights(net):
    stride = _stride(net)
    saved = import_gluon(read_params(FIXTURES / f"{net}.params"), image_size=32, stride_at=stride)
    exported = import_gluon(
        read_params(FIXTURES / f"{net}-0000.params"), image_size=32, stride_at=stride
    )
    assert saved.spec == exported.spec
    assert list(saved.weights) == list(exported.weights) == list(expand(saved.spec).tensor_shapes())
    for name, value in saved.weights.items():
        np.testing.assert_array_equal(value, exported.weights[name])


@pytest.mark.parametrize(
    ("net", "block", "flags"),
    [
        ("v1_bottleneck", "bottleneck", {"bottleneck_bias": True, "stride_at": "1x1"}),
        ("v2_bottleneck", "preact_bottleneck", {"data_bn": True, "stride_at": "3x3"}),
        ("v2_basic", "preact_basic", {"first_unit_bn": True}),
    ],
)
def test_inferred_spec(net, block, flags):
    params = read_params(FIXTURES / f"{net}.params")
    spec = import_gluon(params, image_size=32, stride_at=_stride(net)).spec
    assert spec.block == block and spec.classes == 5 and spec.stem_width == 8
    assert all(getattr(spec, k) == v for k, v in flags.items())


def test_fp16_folded_fixed_batch_import(tmp_path):
    out = tmp_path / "r.onnx"
    args = ["import", str(FIXTURES / "v1_bottleneck.params"), "--image-size", "32"]
    args += [
        "--stride-at",
        "1x1",
        "--fold-bn",
        "--dtype",
        "float16",
        "--batch",
        "2",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    x, y = _expected("v1_bottleneck")
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(out).graph.node}
    assert rel_l2(run_onnx(str(out), x), y) < 1e-2


def test_wrong_expected_outputs_fail_the_check_and_write_nothing(tmp_path, capsys):
    x, y = _expected("v1_basic")
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=x, output=y * 1.01)
    out = tmp_path / "r.onnx"
    assert (
        main(["import", str(FIXTURES / "v1_basic.params"), "--expect", str(bad), "-o", str(out)])
        == 1
    )
    assert "disagrees" in capsys.readouterr().err
    assert not out.exists()


def test_thumbnail_stem_is_refused(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    assert main(["import", str(FIXTURES / "v1_thumbnail.params"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "thumbnail" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def _write(path: Path, arrays: list[bytes], names: list[str]) -> Path:
    body = struct.pack("<QQQ", 0x112, 0, len(arrays)) + b"".join(arrays)
    body += struct.pack("<Q", len(names)) + b"".join(
        struct.pack("<Q", len(n)) + n.encode() for n in names
    )
    path.write_bytes(body)
    return path


def _array(values: np.ndarray, *, magic=0xF993FAC9, stype=0, flag=0) -> bytes:
    head = struct.pack("<Ii", magic, stype) + struct.pack("<i", values.ndim)
    head += struct.pack(f"<{values.ndim}q", *values.shape) + struct.pack("<iii", 1, 0, flag)
    return head + values.tobytes()


def test_reader_dtypes_and_versions(tmp_path):
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    legacy = struct.pack("<I2I", 2, 2, 3) + struct.pack("<iii", 1, 0, 0) + f32.tobytes()
    v1 = struct.pack("<Ii2q", 0xF993FAC8, 2, 2, 3) + struct.pack("<iii", 1, 0, 0) + f32.tobytes()
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)
    arrays = [
        _array(f32),
        _array(f32.astype(np.float16), flag=2),
        _array(bf16, flag=12),
        _array(np.array([7], np.int64), flag=6),
        legacy,
        v1,
        struct.pack("<Iii", 0xF993FAC9, 0, 0),  # an empty array: ndim 0 and nothing after it
    ]
    names = ["f32", "f16", "bf16", "i64", "legacy", "v1", "empty"]
    got = read_params(_write(tmp_path / "x.params", arrays, names))
    for name in ("f32", "f16", "bf16", "legacy", "v1"):
        np.testing.assert_array_equal(got[name], f32)
        assert got[name].dtype == np.float32
    assert got["i64"].tolist() == [7] and got["empty"].size == 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16), "not an MXNet NDArray file"),
        (lambda p: p.write_bytes((FIXTURES / "v1_basic.params").read_bytes()[:5000]), "truncated"),
        (lambda p: _write(p, [_array(np.ones(2, np.float32), stype=2)], ["s"]), "stored csr"),
        (lambda p: _write(p, [_array(np.ones(2, np.float32), stype=1)], ["s"]), "row_sparse"),
        (lambda p: _write(p, [_array(np.ones(2, np.float32), flag=9)], ["s"]), "dtype flag 9"),
        (lambda p: _write(p, [_array(np.ones(2, np.float32), magic=0xDEADBEEF)], ["s"]), "magic"),
    ],
)
def test_bad_params_files_are_one_line_errors(tmp_path, build, message):
    path = tmp_path / "bad.params"
    build(path)
    with pytest.raises(ParamsError, match=message) as err:
        read_params(path)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_bad_params_file_exits_2_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "trunc.params"
    path.write_bytes((FIXTURES / "v2_basic-0000.params").read_bytes()[:-7])
    out = tmp_path / "r.onnx"
    assert main(["import", str(path), "-o", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not out.exists()


def test_names_that_match_no_flavour_are_refused(tmp_path):
    params = read_params(FIXTURES / "v1_bottleneck.params")
    del params["features.5.1.body.0.bias"]
    with pytest.raises(GraphError, match="missing features.5.1.body.0.bias"):
        import_gluon(params)
    params = read_params(FIXTURES / "v1_basic.params")
    params["features.4.0.body.0.bias"] = np.zeros(8, np.float32)
    with pytest.raises(GraphError, match="unexpected features.4.0.body.0.bias"):
        import_gluon(params)
    with pytest.raises(GraphError, match="match no Gluon ResNet"):
        import_gluon({"conv1.weight": np.zeros((8, 3, 7, 7), np.float32)})


def test_data_bn_with_a_learned_shift_is_refused():
    params = read_params(FIXTURES / "v2_basic.params")
    params["features.0.beta"] = np.ones(3, np.float32)
    with pytest.raises(GraphError, match="data BN's shift"):
        import_gluon(params)


def test_data_bn_scale_is_ignored_as_mxnet_ignores_it():
    """Gluon's data BN has scale=False: MXNet runs it with fix_gamma, whatever gamma holds."""
    params = read_params(FIXTURES / "v2_basic.params")
    before = import_gluon(dict(params), image_size=32).weights
    params["features.0.gamma"] = np.array([2.0, 3.0, 4.0], np.float32)
    after = import_gluon(params, image_size=32).weights
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bottleneck_params_without_stride_placement_are_refused(tmp_path, capsys):
    """Gluon's model zoo strides v1 on the 1x1 and v2 on the 3x3, but the file cannot show which
    code made it: import asks, in one line, and writes nothing."""
    out = tmp_path / "r.onnx"
    assert main(["import", str(FIXTURES / "v1_bottleneck.params"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert "--stride-at 1x1 or 3x3" in err and "1x1 for resnet*_v1, 3x3 for resnet*_v2" in err


def test_params_without_expected_outputs_are_not_called_verified(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    args = ["import", str(FIXTURES / "v2_bottleneck-0000.params"), "--stride-at", "3x3"]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verified" not in printed.lower()
    line = next(line for line in printed.splitlines() if line.startswith("NOT checked"))
    assert "names and shapes fit" in line and "no MXNet here" in line and "--expect" in line
    assert "stride on 3x3 (--stride-at; the weights do not show it)" in printed
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["graphgen.import.checked"] == "names-and-shapes"


def test_a_wrong_stride_placement_fails_against_mxnet_outputs(tmp_path, capsys):
    """What --stride-at says is checked wherever something computes: v1 strides on the 1x1."""
    out = tmp_path / "r.onnx"
    args = ["import", str(FIXTURES / "v1_bottleneck.params"), "--stride-at", "3x3"]
    args += ["--expect", str(FIXTURES / "v1_bottleneck.npz"), "-o", str(out)]
    assert main(args) == 1
    assert "the imported graph disagrees" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("mxnet") is not None, reason="MXNet installed")
def test_gluon_arch_without_mxnet_says_how_to_check(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    args = ["import", str(FIXTURES / "v1_basic.params"), "--arch", "gluon:resnet18_v1"]
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs MXNet" in err and "--expect OUT.npz" in err and not out.exists()


def test_torch_arch_does_not_check_params(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    args = ["import", str(FIXTURES / "v1_basic.params"), "--arch", "torchvision:resnet18"]
    assert main([*args, "-o", str(out)]) == 2
    assert "checks torch state_dicts, not a .params file" in capsys.readouterr().err


def test_gluon_arch_checks_against_mxnet(tmp_path, capsys):
    """Where MXNet is installed (a side venv: it needs numpy<1.24): Gluon's zoo resnet18_v1 with
    random weights, both name styles, checked against MXNet in float64."""
    mx = pytest.importorskip("mxnet", reason="MXNet not installed")
    from mxnet.gluon.model_zoo import vision

    net = vision.get_model("resnet18_v1", classes=7)
    net.initialize(mx.init.Normal(0.05))
    net(mx.nd.zeros((1, 3, 32, 32)))
    rng = np.random.default_rng(0)
    for name, p in net.collect_params().items():
        if name.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.array(rng.normal(0, 0.3, p.shape).astype(np.float32)))
        elif name.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    net.save_parameters(str(tmp_path / "r18.params"))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(tmp_path / "r18"))
    for source in ("r18.params", "r18-0000.params"):
        out = tmp_path / f"{source}.onnx"
        args = ["import", str(tmp_path / source), "--arch", "gluon:resnet18_v1"]
        assert main([*args, "--image-size", "32", "-o", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "verified: rel. L2 " in printed and "against gluon:resnet18_v1 (mxnet " in printed
        meta = {p.key: p.value for p in onnx.load(out).metadata_props}
        assert meta["graphgen.import.checked"] == "gluon:resnet18_v1"
