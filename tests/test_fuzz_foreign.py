"""Property tests on foreign data (issue 21): fuzzed ONNX graphs and `.params` headers.

Every outcome of `graphgen import` on a mutated graph is a successful import (exit 0, a valid
file) or one line on stderr and exit 2 with nothing written; never a traceback, a hang or a
blow-up. A `.params` file of random bytes after a valid magic, or random shapes and dtypes, is
always one line and exit 2.

Each property runs in a child process with an address-space limit (FUZZ_MEMORY) and a
wall-clock limit (FUZZ_SECONDS for the whole run); inside it every example also has its own
alarm, so a hang names its example. The example count is small in CI; `FUZZ_EXAMPLES=2000
python -m pytest tests/test_fuzz_foreign.py` fuzzes longer (FUZZ_SEED picks another stream).
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUZZ_MEMORY = 6 * 2**30  # address space of the child (torch and onnxruntime map a lot)
FUZZ_SECONDS = 540  # the whole run: far past what the examples take, short of forever
EXAMPLE_SECONDS = 60  # one example: an import of an 8x8 ResNet-8 takes a second
EXAMPLES = {"onnx": 30, "params": 150}


def _run_child(kind: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (FUZZ_MEMORY, FUZZ_MEMORY))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory() as d:
        try:
            return subprocess.run(
                [sys.executable, "-m", "tests.test_fuzz_foreign", kind],
                capture_output=True, text=True, cwd=d, env=env, timeout=FUZZ_SECONDS,
                preexec_fn=limit,
            )  # fmt: skip
        except subprocess.TimeoutExpired as err:
            pytest.fail(f"the {kind} fuzz run took past {FUZZ_SECONDS} s: {err.stdout!r:.2000}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_fuzzed_foreign_files_import_or_refuse_in_one_line(kind: str) -> None:
    done = _run_child(kind)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "examples passed" in done.stdout, done.stdout[-2000:]


# --- the child: hypothesis over mutations -----------------------------------------------------


class Hang(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang(f"an example ran past {EXAMPLE_SECONDS} s")


def run_import(source: Path, out: Path) -> tuple[int, str]:
    """`graphgen import SOURCE -o OUT` in this process: (exit code, stderr)."""
    from graphgen.cli import main
    from tests._hostile import native_stderr

    err = io.StringIO()
    signal.alarm(EXAMPLE_SECONDS)
    try:
        # C++ libraries' logs (on file descriptor 2 itself) count as lines too
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
            native_stderr() as native,
        ):
            try:
                code = main(["import", str(source), "-o", str(out)])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        signal.alarm(0)
    return code, native() + err.getvalue()


def check_outcome(folder: Path, source: str, code: int, err: str) -> None:
    """A successful import, or one line, exit 2 and nothing written."""
    out = folder / "out.onnx"
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        import onnx

        onnx.checker.check_model(str(out), full_check=True)
        return
    assert code == 2, f"exit code {code}: {err[-1500:]}"
    assert len(lines) == 1 and "Traceback" not in err, err[-1500:]
    left = sorted(p.name for p in folder.iterdir())
    assert left == [source], f"left behind: {left}"


def fuzz_settings(examples: int, seed: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A fixed example stream in CI (derandomized), another with FUZZ_SEED; no deadline (the
    child's alarms bound time), no example database written anywhere."""
    from hypothesis import HealthCheck, settings
    from hypothesis import seed as seeded

    chosen = settings(
        max_examples=examples, deadline=None, database=None, derandomize=not seed,
        suppress_health_check=list(HealthCheck), print_blob=True,
    )  # fmt: skip

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        test = chosen(test)
        return seeded(seed)(test) if seed else test

    return apply


def fuzz_onnx(examples: int, seed: int) -> None:
    import numpy as np
    import onnx
    from hypothesis import given
    from hypothesis import strategies as st

    from tests._hostile import tiny_onnx

    base = tiny_onnx()
    names = sorted(
        {t for n in base.graph.node for t in (*n.input, *n.output)}
        | {t.name for t in base.graph.initializer}
    )
    ops = sorted({n.op_type for n in base.graph.node} | {"Identity", "Sum", "MatMul", "Slice"})
    types = [v for k, v in onnx.TensorProto.DataType.items() if k != "UNDEFINED"]
    ints = st.integers(-4, 300) | st.sampled_from([0, 1, 2, 3, 2**31, 2**62, -(2**62)])
    count = len(base.graph.node)

    def mutation(draw: Callable[..., object]) -> Callable[[onnx.ModelProto], None]:
        kind = draw(st.sampled_from([
            "rewire", "rename-output", "ints", "int", "float", "drop-attribute", "op-type",
            "drop-input", "add-input", "drop-node", "swap-nodes", "dims", "raw-data",
            "data-type", "value", "opset", "input-shape", "external",
        ]))  # fmt: skip
        i = draw(st.integers(0, count - 1))
        j = draw(st.integers(0, 6))
        tensor = draw(st.sampled_from([*names, "", "nowhere"]))
        values = draw(st.lists(ints, max_size=6))
        number = draw(st.floats(allow_nan=True, allow_infinity=True, width=32))

        def edit(m: onnx.ModelProto) -> None:
            g = m.graph
            if not g.node:
                return
            node = g.node[i % len(g.node)]
            init = g.initializer[i % len(g.initializer)] if len(g.initializer) else None
            attrs = list(node.attribute)
            attr = attrs[j % len(attrs)] if attrs else None
            if kind == "rewire" and node.input:
                node.input[j % len(node.input)] = tensor
            elif kind == "rename-output" and node.output:
                node.output[0] = tensor
            elif kind == "ints" and attr is not None:
                attr.ClearField("ints")
                attr.ints.extend(values)
                attr.type = onnx.AttributeProto.INTS
            elif kind == "int" and attr is not None:
                attr.i = values[0] if values else 0
                attr.type = onnx.AttributeProto.INT
            elif kind == "float" and attr is not None:
                attr.f = number
                attr.type = onnx.AttributeProto.FLOAT
            elif kind == "drop-attribute" and attrs:
                node.attribute.remove(attr)
            elif kind == "op-type":
                node.op_type = ops[j % len(ops)]
            elif kind == "drop-input" and node.input:
                del node.input[j % len(node.input)]
            elif kind == "add-input":
                node.input.append(tensor)
            elif kind == "drop-node":
                g.node.remove(node)
            elif kind == "swap-nodes":
                other = g.node[(i + j + 1) % len(g.node)]
                a, b = onnx.NodeProto(), onnx.NodeProto()
                a.CopyFrom(node)
                b.CopyFrom(other)
                node.CopyFrom(b)
                other.CopyFrom(a)
            elif kind == "dims" and init is not None:
                init.dims[:] = values
            elif kind == "raw-data" and init is not None:
                init.raw_data = init.raw_data[: j * 4]
            elif kind == "data-type" and init is not None:
                init.data_type = types[(i + j) % len(types)]
            elif kind == "value" and init is not None and init.data_type == 1 and init.raw_data:
                array = np.frombuffer(init.raw_data, np.float32).copy()
                array[j % len(array)] = number
                init.raw_data = array.tobytes()
            elif kind == "opset":
                m.opset_import[0].version = values[0] if values else 0
            elif kind == "input-shape":
                dims = g.input[0].type.tensor_type.shape.dim
                dims[j % len(dims)].dim_value = values[0] if values else 0
            elif kind == "external" and init is not None:
                init.data_location = onnx.TensorProto.EXTERNAL
                for key, value in (("location", tensor or "x"), ("offset", str(values[:1]))):
                    entry = init.external_data.add()
                    entry.key, entry.value = key, value

        return edit

    @st.composite
    def mutated(draw: Callable[..., object]) -> bytes:
        model = onnx.ModelProto()
        model.CopyFrom(base)
        for edit in draw(st.lists(st.composite(mutation)(), min_size=1, max_size=3)):
            edit(model)
        return model.SerializeToString()

    @fuzz_settings(examples, seed)
    @given(data=mutated())
    def prop(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            (folder / "src.onnx").write_bytes(data)
            code, err = run_import(folder / "src.onnx", folder / "out.onnx")
            check_outcome(folder, "src.onnx", code, err)

    prop()


def fuzz_params(examples: int, seed: int) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from tests._hostile import PARAMS_MAGIC, V2_MAGIC

    magics = st.sampled_from([V2_MAGIC, V2_MAGIC + 1, V2_MAGIC - 1, 0, 1, 2, 4, 33, 0xDEADBEEF])
    dims = st.integers(-(2**63), 2**63 - 1) | st.integers(0, 64)

    @st.composite
    def array(draw: Callable[..., object]) -> bytes:
        magic = draw(magics)
        ndim = draw(st.integers(-2, 40))
        shape = draw(st.lists(dims, min_size=max(ndim, 0) % 8, max_size=max(ndim, 0) % 8))
        out = struct.pack("<I", magic)
        if magic in (V2_MAGIC, V2_MAGIC + 1):
            out += struct.pack("<i", draw(st.integers(-1, 3)))  # storage type
        out += struct.pack("<i", ndim) + b"".join(struct.pack("<q", d) for d in shape)
        out += struct.pack("<iii", 1, 0, draw(st.integers(-1, 13)))
        return out + draw(st.binary(max_size=64))

    @st.composite
    def params(draw: Callable[..., object]) -> bytes:
        head = struct.pack(
            "<QQQ", PARAMS_MAGIC, 0, draw(st.integers(0, 4) | st.integers(0, 2**64 - 1))
        )
        if draw(st.booleans()):
            return head + draw(st.binary(max_size=256))  # random bytes after a valid magic
        body = b"".join(draw(st.lists(array(), max_size=3)))
        names = draw(st.lists(st.text(max_size=12), max_size=4))
        tail = struct.pack("<Q", draw(st.sampled_from([len(names), 0, 2**63]))) + b"".join(
            struct.pack("<Q", len(n.encode())) + n.encode() for n in names
        )
        return head + body + tail

    @fuzz_settings(examples, seed)
    @given(data=params())
    def prop(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            (folder / "w.params").write_bytes(data)
            code, err = run_import(folder / "w.params", folder / "out.onnx")
            assert code == 2, f"exit code {code}: {err[-1500:]}"
            check_outcome(folder, "w.params", code, err)

    prop()


if __name__ == "__main__":
    kind = sys.argv[1]
    examples = int(os.environ.get("FUZZ_EXAMPLES", EXAMPLES[kind]))
    seed = int(os.environ.get("FUZZ_SEED", "0"))
    signal.signal(signal.SIGALRM, _on_alarm)
    {"onnx": fuzz_onnx, "params": fuzz_params}[kind](examples, seed)
    print(f"{kind}: {examples} examples passed")
