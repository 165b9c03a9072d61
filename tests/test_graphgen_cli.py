"""The graphgen command line: files it writes, and one-line errors with exit code 2."""

import json

import onnx
import pytest

from graphgen.cli import main


def test_build_default_name_and_info(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--depth", "20"]) == 0
    assert (tmp_path / "cifar-resnet20.onnx").is_file()
    capsys.readouterr()
    assert main(["info", "cifar-resnet20.onnx", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 269_722 and info["macs"] == 40_551_040
    assert info["flops"] == 2 * info["macs"]
    assert info["input_shape"] == ["N", 3, 32, 32] and info["output_shape"] == ["N", 10]
    assert info["graphgen"]["spec"]["shortcut"] == "A"


def test_default_file_name_says_what_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--depth", "20", "--image-size", "64", "--classes", "100"]) == 0
    assert main(["build", "--depth", "20", "--dtype", "float16", "--fold-bn"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cifar-resnet20-64px-100cls.onnx", "cifar-resnet20-fp16-folded.onnx"]
    assert main(["build", "--depth", "20", "--batch", "8"]) == 0
    assert (tmp_path / "cifar-resnet20-b8.onnx").is_file()


def test_build_options_reach_the_graph(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    argv = [
        "build",
        "--depth",
        "18",
        "--image-size",
        "64",
        "--classes",
        "7",
        "--batch",
        "3",
        "--opset",
        "13",
        "--dtype",
        "float16",
        "--fold-bn",
        "--shortcut",
        "C",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 13
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [3, 7]
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Cast" in ops
    assert any(n.name == "layer1.0.downsample.0" for n in model.graph.node)


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["resnet152"]["params"] == 60_192_808
    assert rows["cifar-resnet1202"]["macs"] > 2_800_000_000
    assert {"name", "params", "macs", "flops", "input_shape", "output_shape"} <= set(
        rows["plain18"]
    )


def test_build_all(tmp_path, monkeypatch):
    import graphgen.cli.build as build_cmd
    from graphgen.spec import STANDARD_VARIANTS

    small = {k: v for k, v in STANDARD_VARIANTS.items() if k in ("cifar-resnet20", "cifar-plain20")}
    monkeypatch.setattr(build_cmd, "STANDARD_VARIANTS", small)
    assert main(["build", "--all", "--out-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cifar-plain20.onnx",
        "cifar-resnet20.onnx",
    ]


def test_spec_file_yaml_and_json(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "layers: [1, 1]\nwidths: [8, 16]\nblock: bottleneck\nstem: cifar\n"
        "stem_width: 8\nshortcut: C\nclasses: 5\nimage_size: 16\n"
    )
    out = tmp_path / "net.onnx"
    assert main(["build", "--spec", str(spec), "-o", str(out)]) == 0
    assert onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5
    js = tmp_path / "net.json"
    js.write_text(json.dumps({"depth": 32, "dataset": "cifar10", "shortcut": "B"}))
    assert main(["build", "--spec", str(js), "-o", str(tmp_path / "j.onnx")]) == 0


BAD = [
    (["build", "--depth", "17"], "6n+2"),
    (["build", "--depth", "20", "--shortcut", "D"], "invalid choice"),
    (["build", "--depth", "20", "--block", "wide"], "invalid choice"),
    (["build", "--depth", "20", "--dtype", "int8"], "unknown dtype"),
    (["build", "--depth", "20", "--opset", "12"], "opset 12 is out of range"),
    (["build", "--depth", "20", "--opset", "99"], "opset 99 is out of range"),
    (["build", "--depth", "50", "--image-size", "16"], "too small"),
    (["build", "--depth", "20", "--classes", "0"], "classes must be a positive integer"),
    (["build", "--depth", "20", "--classes", "-3"], "classes must be a positive integer"),
    (["build", "--depth", "20", "--batch", "0"], "--batch"),
    (["build", "--all", "--shortcut", "C"], "--all builds the standard variants"),
    (["build", "--all", "-o", "x.onnx"], "--all builds the standard variants"),
    (["build", "--depth", "20", "--out-dir", "."], "--out-dir goes with --all"),
    (["build", "--depth", "20", "--seed", "-1"], "seed must be in 0 .. 2**63-1"),
    (["build", "--depth", "20", "--seed", str(2**63)], "seed must be in 0 .. 2**63-1"),
    (["build", "--depth", "20", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["build", "--depth", "20", "-o", "/proc/graphgen-test.onnx"], "cannot write"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_arguments(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:  # argparse's own errors exit from inside main(); ours return the code
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("layers: [2, 2]\nwidths: [0, 16]\n", ".yaml", "widths must be positive"),
        ("layers: [2, 2]\nwidthz: [8, 16]\n", ".yaml", "unknown key 'widthz'"),
        ("layers: [2, 2\nwidths: [8, 16]\n", ".yaml", "line"),
        ('{"depth": 20,}', ".json", "line 1"),
        ("depth: 21\n", ".yaml", "unknown depth 21"),
        ("- 1\n- 2\n", ".yaml", "expected a mapping"),
        ("layers: [2, 2]\nwidths: [16, 8]\nstem: cifar\nshortcut: A\n", ".yaml", "may not shrink"),
    ],
)
def test_malformed_spec_files(text, suffix, message, tmp_path, capsys):
    spec = tmp_path / f"spec{suffix}"
    spec.write_text(text)
    assert main(["build", "--spec", str(spec), "-o", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out.onnx").exists()


def test_unwritable_output(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["build", "--depth", "20", "-o", str(locked / "m.onnx")])
        err = capsys.readouterr().err.strip()
        if code == 0:  # root ignores permissions: the missing-folder case below still applies
            (locked / "m.onnx").unlink()
        else:
            assert code == 2 and "cannot write" in err and "\n" not in err
    finally:
        locked.chmod(0o700)
    assert main(["build", "--depth", "20", "-o", str(tmp_path / "nope" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_spec_name_and_dataset_are_checked(tmp_path, capsys):
    for text, message in [
        ("name: ../escaped\ndepth: 20\n", "name must be"),
        ("name: 5\ndepth: 20\n", "name must be"),
        ("layers: [1]\nwidths: [8]\ndataset: foo\n", "unknown dataset"),
    ]:
        spec = tmp_path / "s.yaml"
        spec.write_text(text)
        assert main(["build", "--spec", str(spec), "-o", str(tmp_path / "m.onnx")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert not (tmp_path.parent / "escaped.onnx").exists()


def test_info_on_corrupt_graphgen_metadata(tmp_path, capsys):
    import onnx

    from graphgen.onnx_io import build
    from graphgen.spec import cifar_spec

    model = build(cifar_spec(20))
    for prop in model.metadata_props:
        if prop.key == "graphgen.params":
            prop.value = "lots"
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert main(["info", str(tmp_path / "m.onnx")]) == 2
    assert "corrupt graphgen metadata" in capsys.readouterr().err


def test_binary_spec_file(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\xff\xfe\x00binary")
    assert main(["build", "--spec", str(spec), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "is not a text file" in capsys.readouterr().err


def test_info_on_non_onnx(tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a model at all" * 10)
    assert main(["info", str(junk)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an ONNX model" in err and "\n" not in err
    assert main(["info", str(tmp_path / "missing.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--depth", "18", "--dataset", "cifar10"], "use --family imagenet"),
        (["--depth", "20", "--dataset", "imagenet"], "use --family cifar10"),
    ],
)
def test_depth_and_family_mismatch_says_which_family(argv, message, tmp_path, capsys):
    assert main(["build", *argv, "-o", str(tmp_path / "m.onnx")]) == 2
    assert message in capsys.readouterr().err


def test_a_cifar_stem_brings_cifar_defaults():
    from graphgen.spec import spec_from_mapping

    spec = spec_from_mapping({"layers": [1, 1], "widths": [16, 32], "stem": "cifar"})
    assert (spec.image_size, spec.classes, spec.stem_width, spec.shortcut) == (32, 10, 16, "A")
