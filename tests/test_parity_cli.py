"""`bench-runtimes parity` and `list` end to end: exit codes, one-line errors, tampered graphs."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from runtimes import registry
from runtimes.cli import main
from runtimes.models import resolve
from runtimes.parity import structure_check


@pytest.fixture(autouse=True)
def _cache(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHGEN_CACHE", str(model_cache))


@pytest.fixture(scope="module")
def tampered(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR ResNet-20 whose first shortcut is rewired: the block adds its residual to itself."""
    model = onnx.load(resolve("cifar-resnet20", cache_dir=model_cache).path)
    (add,) = [n for n in model.graph.node if n.name == "layer1.0.add"]
    add.input[1] = add.input[0]
    path = tmp_path_factory.mktemp("tampered") / "tampered.onnx"
    onnx.save(model, path)
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str], match: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err


def test_list_shows_every_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(registry.names())
    assert all(r["available"] or r["reason"] for r in rows.values())
    assert main(["list"]) == 0 and "ort-cpu" in capsys.readouterr().out


def test_parity_passes_with_exit_0_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["parity", "--models", "cifar-resnet20", "--runtimes", "ort-cpu,openvino", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (model,) = report["models"]
    assert report["passed"] and model["reference"] == "torch (fp64)" and model["seed"] == 1
    assert [r["status"] for r in model["results"]] == ["pass", "pass"]


def test_the_table_says_what_top_k_agreement_means(capsys: pytest.CaptureFixture[str]) -> None:
    """On random weights and 2 random images, 100% top-5 is agreement between engines, not
    accuracy: the table says so (issue 23)."""
    assert main(["parity", "--models", "cifar-resnet20", "--runtimes", "ort-cpu"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "on these 2 seeded random image(s): agreement, not accuracy" in out


def test_table_lists_unavailable_engines_as_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    if registry.availability("trt") is None:
        pytest.skip("trt is usable here, so nothing is skipped")
    assert main(["parity", "--models", "cifar-resnet20", "--runtimes", "ort-cpu,trt"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "│ trt" in line]
    assert "PASSED" in out and "skipped" in row


def test_tampered_graph_fails_structure_and_numbers(
    tampered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "layer1.0.add" in structure_check(tampered)
    argv = ["parity", "--models", str(tampered), "--runtimes", "ort-cpu,openvino", "--json"]
    assert main(argv) == 1
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["structure"] != "ok"
    assert [r["status"] for r in model["results"]] == ["fail", "fail"]


@pytest.mark.parametrize(
    "extra", [["--image-size", "64"], ["--precision", "fp16"]], ids=["size", "precision"]
)
def test_a_named_file_is_never_swapped_for_a_rebuilt_one(
    tampered: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A rebuild from metadata would pass a tampered file; the file is run as it is or refused.
    assert main(["parity", "--models", str(tampered), "--runtimes", "ort-cpu", *extra]) == 2
    _one_error_line(capsys, "run as it is")


def test_tolerance_override_decides(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["parity", "--models", "cifar-resnet20", "--runtimes", "ort-cpu", "--rtol", "1e-12"]
    assert main([*argv, "--atol", "0"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_foreign_file_runs_on_onnx_engines(
    foreign_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["parity", "--models", str(foreign_model), "--runtimes", "ort-cpu,openvino", "--json"]
    assert main(argv) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["reference"] == "ort-cpu"


def test_foreign_file_with_torch_asked_for_skips_torch_and_runs_the_rest(
    foreign_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["parity", "--models", str(foreign_model), "--runtimes", "torch,ort-cpu,openvino"]
    assert main([*argv, "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    status = {r["runtime"]: (r["status"], r["reason"]) for r in model["results"]}
    assert status["torch"] == (
        "skipped",
        "cannot rebuild a non-graphgen file: foreign.onnx has no graphgen.spec metadata",
    )
    assert status["ort-cpu"] == ("pass", "reference") and status["openvino"][0] == "pass"


def test_reference_engine_failure_is_a_failed_result_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A foreign file no engine can load: every engine's failure is recorded, exit 1."""
    from tests.test_bench_sweep import unloadable_model

    path = unloadable_model(tmp_path / "broken.onnx")
    argv = ["parity", "--models", str(path), "--runtimes", "ort-cpu,openvino"]
    assert main([*argv, "--json"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (model,) = json.loads(captured.out)["models"]
    assert not model["passed"] and "no reference" in model["reference_error"]
    assert [(r["runtime"], r["status"]) for r in model["results"]] == [
        ("ort-cpu", "error"),
        ("openvino", "error"),
    ]
    assert all("\n" not in r["reason"] for r in model["results"])
    assert "NoSuchOp" in model["results"][0]["reason"]
    assert main(argv) == 1  # the table form says so too
    out = capsys.readouterr().out
    assert "no comparison" in out and "FAILED" in out


def test_bracketed_paths_and_reasons_print_verbatim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data text is never read as rich markup: "[/]" in a path (here inside an engine's error
    message) neither vanishes nor raises MarkupError."""
    from tests.test_bench_sweep import unloadable_model

    monkeypatch.chdir(tmp_path)
    folder = Path("r[/]x")  # the folders "r[" and "]x": the path holds "[/]"
    folder.mkdir(parents=True)
    path = unloadable_model(folder / "b[x].onnx")
    assert main(["parity", "--models", str(path), "--runtimes", "ort-cpu,openvino"]) == 1
    out = capsys.readouterr().out
    assert "r[/]x/b[x].onnx" in out and "FAILED" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "nowhere/missing.onnx", "--runtimes", "ort-cpu"], "no such file"),
        (["--models", "FOREIGN", "--runtimes", "torch"], "cannot rebuild a non-graphgen file"),
        (["--models", "cifar-resnet20", "--runtimes", "tensorflow"], "known runtimes are"),
        (
            ["--models", "cifar-resnet20", "--runtimes", "onnx-ref", "--precision", "fp16"],
            "onnx-ref does not support fp16",
        ),
        (["--models", "resnet18", "--runtimes", "ort-cpu", "--image-size", "16"], "image size"),
        (["--models", "resnet19", "--runtimes", "ort-cpu"], "unknown model"),
        (["--models", "cifar-resnet110", "--runtimes", "onnx-ref", "--batch", "8"], "MMAC limit"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    message: str,
    foreign_model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [str(foreign_model) if a == "FOREIGN" else a for a in argv]
    assert main(["parity", *argv]) == 2
    _one_error_line(capsys, message)


def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["parity", "--models", "cifar-resnet20", "--precision", "fp8"])
    assert exit_info.value.code == 2
    _one_error_line(capsys, "invalid choice")


def test_only_unavailable_engines_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    gpu = [n for n in ("ort-cuda", "ort-trt", "trt") if registry.availability(n) is not None]
    if not gpu:
        pytest.skip("every GPU engine is usable here")
    assert main(["parity", "--models", "cifar-resnet20", "--runtimes", ",".join(gpu)]) == 2
    _one_error_line(capsys, "no usable engine")


def test_a_file_with_a_fixed_batch_runs_at_that_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from graphgen.cli import main as graphgen

    path = tmp_path / "fixed.onnx"
    assert graphgen(["build", "--depth", "8", "--batch", "3", "-o", str(path)]) == 0
    capsys.readouterr()
    assert main(["parity", "--models", str(path), "--runtimes", "ort-cpu", "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["batch"] == 3
    assert main(["parity", "--models", str(path), "--runtimes", "ort-cpu", "--batch", "2"]) == 2
    _one_error_line(capsys, "has a fixed batch of 3")
    run = ["run", "--models", str(path), "--runtimes", "ort-cpu", "--out", str(tmp_path / "o")]
    assert main(run) == 2
    _one_error_line(capsys, "pass --batch 3")


def test_fp16_with_the_default_engines_skips_onnx_ref_with_its_reason(capsys):
    """`run` skips an engine that lacks the precision; `parity` does the same (it used to exit
    2 on onnx-ref with the default engines)."""
    rc = main(["parity", "--models", "cifar-resnet20", "--precision", "fp16", "--json"])
    report = json.loads(capsys.readouterr().out)
    results = {r["runtime"]: r for r in report["models"][0]["results"]}
    assert results["onnx-ref"]["status"] == "skipped"
    assert "does not support fp16" in results["onnx-ref"]["reason"]
    assert results["ort-cpu"]["status"] == "pass" and rc == 0
