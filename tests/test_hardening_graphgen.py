"""graphgen's bad-input battery and its debris tests.

Every case in `CASES` is one line on stderr, exit code 2, no traceback, and nothing created,
changed or left behind under the test's folder (the machinery of tests/test_bad_inputs.py).
`python -m tests.test_hardening_graphgen --count [ROOT [ID ...]]` runs each case in a child process
(time and memory limited) against the tree at ROOT: how the count of cases already clean
before this module's fixes was measured.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from graphgen.cli import main
from graphgen.onnx_io import build, build_file
from graphgen.spec import cifar_spec
from tests._graphs import normal_input, run_ort
from tests.test_bad_inputs import Case, a_device, a_file, run_case, spec_file

G = "graphgen"
OUT = ("-o", "{d}/m.onnx")
TINY = cifar_spec(8, image_size=8)


def a_socket(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(d / name))
        sock.close()

    return make


def a_symlink(name: str, target: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / target).write_text("x")
        (d / name).symlink_to(d / target)

    return make


def a_folder(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).mkdir(parents=True)

    return make


def tiny_model(d: Path, name: str, **spec_changes: object) -> Path:
    spec = TINY.replace(**spec_changes) if spec_changes else TINY
    return build_file(spec, d / name)


def tiny_weights(d: Path, name: str, *, poison: str | None = None, value: float = np.nan) -> None:
    from graphgen.onnx_io import weights_of

    weights = weights_of(build(TINY, seed=3))
    if poison is not None:
        weights[poison] = weights[poison].copy()
        weights[poison].flat[1] = value
    np.savez(d / name, **weights)  # type: ignore[arg-type]


def tiny_safetensors(d: Path, name: str) -> None:
    """Weights as resnet-train saves them: safetensors recording the spec they were trained as."""
    from safetensors.numpy import save_file

    from graphgen.onnx_io import weights_of

    save_file(weights_of(build(TINY, seed=3)), d / name, metadata={"graphgen.spec": TINY.to_json()})


def foreign_model(d: Path, name: str) -> None:
    model = build(TINY)
    del model.metadata_props[:]
    onnx.save(model, d / name)


def crafted(d: Path, name: str, **props: str) -> None:
    """A graphgen file whose metadata someone edited."""
    model = build(TINY)
    onnx.helper.set_model_props(
        model,
        {p.key: p.value for p in model.metadata_props}
        | {f"graphgen.{k}": v for k, v in props.items()},
    )
    onnx.save(model, d / name)


def empty_file(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).write_bytes(b"")

    return make


def model_without_its_data(d: Path, name: str) -> None:
    from graphgen import onnx_io

    threshold = onnx_io.EXTERNAL_DATA_THRESHOLD
    onnx_io.EXTERNAL_DATA_THRESHOLD = 1000
    try:
        build_file(TINY, d / name)
    finally:
        onnx_io.EXTERNAL_DATA_THRESHOLD = threshold
    for data in d.glob(f"{name}*.data"):  # whatever its name (older graphgens: NAME.data)
        data.unlink()


def ort_optimised(d: Path, name: str) -> None:
    """What onnxruntime writes with optimized_model_filepath: com.microsoft FusedConv nodes."""
    import onnxruntime as ort

    source = build_file(TINY, d / f"source-{name}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(d / name)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


# fmt: off
CASES: list[Case] = [
    # absurd sizes: refused before anything is allocated, with the number and the way out
    Case("spec-widths-1e9", G, ("build", "--spec", "{d}/w.yaml", *OUT), "parameters, past the",
         (spec_file("w.yaml", "layers: [1]\nwidths: [1000000000]\n"),)),
    Case("spec-classes-1e9", G, ("build", "--spec", "{d}/c.yaml", *OUT), "parameters, past the",
         (spec_file("c.yaml", "depth: 20\nclasses: 1000000000\n"),)),
    Case("spec-stem-width-1e12", G, ("build", "--spec", "{d}/s.yaml", *OUT), "past the limit",
         (spec_file("s.yaml", f"depth: 20\nshortcut: B\nstem_width: {10**12}\n"),)),
    Case("spec-layers-1e6", G, ("build", "--spec", "{d}/l.yaml", *OUT), "blocks, past the limit",
         (spec_file("l.yaml", "layers: [1000000]\nwidths: [8]\n"),)),
    Case("spec-depth-2**31", G, ("build", "--spec", "{d}/d.json", *OUT), "blocks, past the limit",
         (spec_file("d.json", f'{{"depth": {2**31}}}'),)),
    Case("image-size-1e6", G, ("build", "--depth", "20", "--image-size", "1000000", *OUT),
         "MACs per image, past the limit"),
    Case("classes-1e9", G, ("build", "--depth", "20", "--classes", "1000000000", *OUT),
         "--size-limit params=N"),
    Case("depth-60000002", G, ("build", "--depth", "60000002", *OUT), "30,000,000 blocks"),
    Case("spec-image-size-1e6-activation", G, ("build", "--spec", "{d}/a.yaml", *OUT),
         "values in its largest activation",
         (spec_file("a.yaml", "depth: 20\nimage_size: 1000000\nsize_limit: {macs: 1e18}\n"),)),
    Case("size-limit-too-low", G, ("build", "--depth", "8", "--size-limit", "params=1000", *OUT),
         "has 75,290 parameters, past the limit of 1,000"),
    Case("size-limit-memory", G, ("build", "--depth", "8", "--size-limit", "memory=1000", *OUT),
         "of memory"),
    Case("size-limit-unknown-key", G, ("build", "--depth", "8", "--size-limit", "bogus=3", *OUT),
         "expected KEY=N"),
    Case("spec-size-limit-not-a-mapping", G, ("build", "--spec", "{d}/k.yaml", *OUT),
         "must map limits to numbers", (spec_file("k.yaml", "depth: 8\nsize_limit: 5\n"),)),
    Case("spec-size-limit-unknown-key", G, ("build", "--spec", "{d}/k.yaml", *OUT),
         "expected KEY=N", (spec_file("k.yaml", "depth: 8\nsize_limit: {bogus: 3}\n"),)),
    Case("all-with-size-limit", G, ("build", "--all", "--size-limit", "params=5", "--out-dir",
                                    "{d}/models"), "--size-limit goes with --depth"),
    # outputs: never rename over anything but a regular file (or nothing)
    Case("out-device", G, ("build", "--depth", "8", "-o", "{d}/null"), "not a regular file",
         (a_device("null"),)),
    Case("out-folder", G, ("build", "--depth", "8", "-o", "{d}"), "is a folder"),
    Case("out-socket", G, ("build", "--depth", "8", "-o", "{d}/s.onnx"), "is a socket",
         (a_socket("s.onnx"),)),
    Case("out-symlink", G, ("build", "--depth", "8", "-o", "{d}/l.onnx"), "a symbolic link",
         (a_symlink("l.onnx", "real.onnx"),)),
    Case("out-missing-folder", G, ("build", "--depth", "8", "-o", "{d}/no/m.onnx"),
         "does not exist"),
    Case("out-dir-is-a-file", G, ("build", "--all", "--out-dir", "{d}/f"), "is not a folder",
         (a_file("f"),)),
    Case("out-dir-holds-a-folder", G, ("build", "--all", "--out-dir", "{d}"),
         "resnet18.onnx is a folder", (a_folder("resnet18.onnx"),)),
    Case("inject-out-device", G, ("inject", "{d}/t.onnx", "--weights", "{d}/w.npz", "-o",
                                  "{d}/null"), "not a regular file",
         (lambda d: tiny_model(d, "t.onnx"), lambda d: tiny_weights(d, "w.npz"), a_device("null"))),
    # a depth and the layers or block given with it must agree
    Case("spec-depth-and-layers", G, ("build", "--spec", "{d}/dl.yaml", *OUT),
         "depth 50 and layers [1, 1, 1, 1] disagree",
         (spec_file("dl.yaml", "depth: 50\nlayers: [1, 1, 1, 1]\nwidths: [8, 8, 8, 8]\n"),)),
    Case("spec-cifar-depth-and-layers", G, ("build", "--spec", "{d}/dl.json", *OUT),
         "make a 14-layer net",
         (spec_file("dl.json", '{"depth": 20, "layers": [2, 2, 2]}'),)),
    Case("depth-18-bottleneck", G, ("build", "--depth", "18", "--block", "bottleneck", *OUT),
         "make 26 layers, not 18"),
    Case("depth-50-basic", G, ("build", "--depth", "50", "--block", "basic", *OUT),
         "use --family cifar10"),
    Case("depth-32-bottleneck", G, ("build", "--depth", "32", "--block", "bottleneck", *OUT),
         "9n+2"),
    Case("cifar-depth-34-bottleneck", G, ("build", "--depth", "34", "--dataset", "cifar10",
                                          "--block", "bottleneck", *OUT), "9n+2"),
    # inject: weights that would make a wrong graph, messages that name the right file
    Case("inject-nan-weights", G, ("inject", "{d}/t.onnx", "--weights", "{d}/w.npz", *OUT),
         "tensor 'layer2.0.conv1.weight' holds 1 NaN or Inf values",
         (lambda d: tiny_model(d, "t.onnx"),
          lambda d: tiny_weights(d, "w.npz", poison="layer2.0.conv1.weight"))),
    Case("inject-inf-weights", G, ("inject", "{d}/t.onnx", "--weights", "{d}/w.npz", *OUT),
         "tensor 'bn1.running_var' holds 1 NaN",
         (lambda d: tiny_model(d, "t.onnx"),
          lambda d: tiny_weights(d, "w.npz", poison="bn1.running_var", value=np.inf))),
    Case("inject-residual-into-plain", G,
         ("inject", "{d}/p.onnx", "--weights", "{d}/w.safetensors", *OUT),
         "shortcut 'A' (the graph: 'none')",
         (lambda d: tiny_model(d, "p.onnx", shortcut="none"),
          lambda d: tiny_safetensors(d, "w.safetensors"))),
    Case("inject-foreign-model", G, ("inject", "{d}/f.onnx", "--weights", "{d}/w.npz", *OUT),
         "f.onnx was not made by graphgen",
         (lambda d: foreign_model(d, "f.onnx"), lambda d: tiny_weights(d, "w.npz"))),
    Case("inject-empty-model", G, ("inject", "{d}/e.onnx", "--weights", "{d}/w.npz", *OUT),
         "e.onnx is an empty file", (empty_file("e.onnx"), lambda d: tiny_weights(d, "w.npz"))),
    Case("inject-missing-external-data", G,
         ("inject", "{d}/x.onnx", "--weights", "{d}/w.npz", *OUT),
         "its external data file 'x.onnx.",
         (lambda d: model_without_its_data(d, "x.onnx"), lambda d: tiny_weights(d, "w.npz"))),
    Case("inject-crafted-metadata-blocks", G,
         ("inject", "{d}/c.onnx", "--weights", "{d}/w.npz", *OUT), "10,000,000 blocks",
         (lambda d: crafted(d, "c.onnx", spec='{"layers": [10000000], "widths": [4]}'),
          lambda d: tiny_weights(d, "w.npz"))),
    Case("inject-crafted-metadata-fold", G,
         ("inject", "{d}/c.onnx", "--weights", "{d}/w.npz", *OUT), "unreadable graphgen metadata",
         (lambda d: crafted(d, "c.onnx", fold_bn="{not json"), lambda d: tiny_weights(d, "w.npz"))),
    # info: the cause, not its symptom
    Case("info-empty-file", G, ("info", "{d}/e.onnx"), "is an empty file", (empty_file("e.onnx"),)),
    Case("info-not-onnx", G, ("info", "{d}/g.onnx"), "is not an ONNX model",
         (a_file("g.onnx"),)),
    Case("info-ort-optimised", G, ("info", "{d}/o.onnx"), "com.microsoft: FusedConv",
         (lambda d: ort_optimised(d, "o.onnx"),)),
    Case("info-markup-name-missing", G, ("info", "{d}/[red]x[/].onnx"), "no such file"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    _, text, problem = run_case(case, tmp_path)
    assert problem is None, f"{problem}; stderr: {text[-2000:]}"


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


# --- what the refusals let through ------------------------------------------------------------


def test_raised_limit_builds(tmp_path: Path) -> None:
    """The way out the message names works: a raised limit builds the same graph."""
    out = tmp_path / "m.onnx"
    assert main(["build", "--depth", "8", "--size-limit", "params=100000", "-o", str(out)]) == 0
    spec = tmp_path / "s.yaml"
    spec.write_text("depth: 8\nimage_size: 8\nsize_limit: {params: 100000, macs: 1e9}\n")
    assert main(["build", "--spec", str(spec), "-o", str(tmp_path / "s.onnx")]) == 0
    onnx.checker.check_model(str(tmp_path / "s.onnx"), full_check=True)


def test_cifar_bottleneck_depth_is_the_depth_built(tmp_path: Path, capsys) -> None:
    """`--depth 56 --block bottleneck` is a 56-layer net (9n+2, He et al. 2016), and says so."""
    out = tmp_path / "b.onnx"
    assert main(["build", "--depth", "56", "--block", "bottleneck", "-o", str(out)]) == 0
    assert "56 layers, 6x6x6 bottleneck blocks" in capsys.readouterr().out
    model = onnx.load(str(out))
    convs = [n for n in model.graph.node if n.op_type == "Conv" and "downsample" not in n.name]
    assert len(convs) + 1 == 56  # the paper's count: main-path convs plus the fc


def test_depth_and_agreeing_layers_build(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("depth: 20\nlayers: [2, 3, 4]\nimage_size: 8\n")
    assert main(["build", "--spec", str(spec), "-o", str(tmp_path / "m.onnx")]) == 0


def test_all_makes_the_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphgen.cli import build as build_cmd

    monkeypatch.setattr(build_cmd, "STANDARD_VARIANTS", {"cifar-resnet20": cifar_spec(20)})
    out = tmp_path / "models" / "new"
    assert main(["build", "--all", "--out-dir", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["cifar-resnet20.onnx"]


def test_inject_of_recorded_weights_into_their_own_net(tmp_path: Path) -> None:
    """The recorded-spec check lets the right weights through, at another image size too."""
    tiny_safetensors(tmp_path, "w.safetensors")
    tiny_model(tmp_path, "t.onnx", image_size=16)
    out = tmp_path / "out.onnx"
    weights = str(tmp_path / "w.safetensors")
    assert main(["inject", str(tmp_path / "t.onnx"), "--weights", weights, "-o", str(out)]) == 0
    from graphgen.onnx_io import weights_of

    trained = weights_of(build(TINY, seed=3))
    x = normal_input(TINY.replace(image_size=16))
    np.testing.assert_array_equal(
        run_ort(onnx.load(str(out)), x),
        run_ort(build(TINY.replace(image_size=16), weights=trained), x),
    )


@pytest.mark.parametrize("name", ["a[/]b.onnx", "resnet[v2].onnx", "x[bold]y[/bold].onnx"])
def test_info_shows_file_names_as_written(name: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    build_file(TINY, path)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert name in capsys.readouterr().out.replace("\n", "").replace(" ", "")


def test_list_sizes_match_the_built_files(tmp_path: Path) -> None:
    """`graphgen list`'s file size is the fp32 file's to 3%; its memory adds the activations."""
    from graphgen.cli.listing import rows
    from graphgen.spec import STANDARD_VARIANTS

    by_name = {row["name"]: row for row in rows()}
    for name in ("cifar-resnet20", "cifar-plain20"):
        size = build_file(STANDARD_VARIANTS[name], tmp_path / f"{name}.onnx").stat().st_size
        row = by_name[name]
        assert abs(row["file_bytes"] - size) < 0.03 * size  # the graph itself: ~13 KB here
        # at least the input and the first conv's output live at once (3 + 16 channels, 32x32)
        assert row["peak_activation_bytes"] >= 4 * (3 + 16) * 32 * 32
        assert row["memory_bytes"] == row["file_bytes"] + row["peak_activation_bytes"]


# --- debris and external data -----------------------------------------------------------------


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_killed_build_debris_is_removed_by_the_next_build(tmp_path: Path) -> None:
    """SIGKILL a real build while it writes; its pid-tagged temporary folder is debris, which
    the next build into the folder removes."""
    code = (
        "from graphgen.onnx_io import build_file; from graphgen.spec import imagenet_spec; "
        f"build_file(imagenet_spec(50, image_size=32), {str(tmp_path / 'm.onnx')!r})"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
    try:
        while not any(n.endswith(".tmp") for n in _debris(tmp_path)) and child.poll() is None:
            time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    debris, lock = _debris(tmp_path)  # the lock file stays (not its lock: the kernel drops it)
    assert lock == ".m.onnx.lock"
    assert re.fullmatch(rf"\.m\.onnx\.{child.pid}-[0-9a-f]{{6}}-[0-9a-f]{{8}}\.tmp", debris)
    assert not (tmp_path / "m.onnx").exists()
    build_file(TINY, tmp_path / "other.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.onnx"]


def test_failed_build_leaves_no_debris(tmp_path: Path) -> None:
    from graphgen.errors import GraphError
    from graphgen.onnx_emit import emit_skeleton
    from graphgen.onnx_io import write_streamed
    from graphgen.plan import expand
    from graphgen.weights import init_weights

    plan = expand(TINY)
    skeleton, arrays = emit_skeleton(plan, init_weights(plan))
    skeleton.graph.node[3].input[0] = "no-such-tensor"  # fails the checker inside the temp folder
    with pytest.raises(GraphError):
        write_streamed(skeleton, arrays, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def _data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))


def test_external_data_is_named_by_content(tmp_path: Path, monkeypatch) -> None:
    """A rebuild writes new data under a new name, points the new .onnx at it, and removes the
    old data only once the new model is in place; the same build gives the same name."""
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 1000)
    path = tmp_path / "m.onnx"
    build_file(TINY, path, seed=1)
    (first,) = _data_files(tmp_path)
    build_file(TINY, path, seed=1)
    assert _data_files(tmp_path) == [first]
    build_file(TINY, path, seed=2)
    (second,) = _data_files(tmp_path)
    assert second != first
    x = normal_input(TINY)
    np.testing.assert_array_equal(run_ort(onnx.load(str(path)), x), run_ort(build(TINY, seed=2), x))


def test_data_of_a_killed_build_never_reaches_the_old_model(tmp_path: Path, monkeypatch) -> None:
    """A build killed between its two renames leaves its data beside the old model: the old
    .onnx still runs on its own data, and the next build removes the orphan."""
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 1000)
    path = tmp_path / "m.onnx"
    build_file(TINY, path, seed=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    build_file(TINY, elsewhere / "m.onnx", seed=2)
    (orphan,) = _data_files(elsewhere)
    (elsewhere / orphan).rename(tmp_path / orphan)  # the state right after the data rename
    x = normal_input(TINY)
    np.testing.assert_array_equal(run_ort(onnx.load(str(path)), x), run_ort(build(TINY, seed=1), x))
    build_file(TINY, path, seed=3)
    assert len(_data_files(tmp_path)) == 1 and orphan not in _data_files(tmp_path)


def test_small_rebuild_removes_the_old_external_data(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m.onnx"
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 1000)
    build_file(TINY, path)
    assert len(_data_files(tmp_path)) == 1
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 2**31)
    build_file(TINY, path)
    assert _data_files(tmp_path) == []
    onnx.checker.check_model(str(path), full_check=True)


# --- counting clean cases on any tree ---------------------------------------------------------


def _count(root: Path, ids: list[str], timeout: float = 60.0) -> None:
    from tests.test_bad_inputs import _count as count_cases

    cases = [c for c in CASES if c.id in ids] if ids else CASES
    count_cases(root, timeout, module="test_hardening_graphgen", cases=cases)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--count":  # --count [ROOT [CASE_ID ...]]
        root = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1]).resolve()
        _count(root, sys.argv[3:])
