"""The import's last line of defence: whatever the importer reads, the written graph is run
against the source graph before anything is written. A bug planted in the importer (one weight
off after reading) must end in "disagrees", exit 1 and no file; without the check, the same bug
would be written with a "verified" line (scripts/mutants.py: import-onnx-checked-against-itself)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from graphgen import importing
from graphgen.cli import main
from graphgen.onnx_io import build_file
from graphgen.spec import cifar_spec


def _import(src: Path, out: Path) -> tuple[int, str]:
    out_buffer, err_buffer = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out_buffer), contextlib.redirect_stderr(err_buffer):
        code = main(["import", str(src), "-o", str(out)])
    return code, out_buffer.getvalue() + err_buffer.getvalue()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.onnx"
    build_file(cifar_spec(20), path, seed=3)
    return path


def test_a_faithful_import_is_verified(source: Path, tmp_path: Path) -> None:
    code, printed = _import(source, tmp_path / "out.onnx")
    assert code == 0, printed
    assert "verified" in printed and (tmp_path / "out.onnx").is_file()


def test_an_importer_bug_is_caught_by_the_source_check(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emit = importing.emit_imported

    def off_by_a_little(spec, weights, options, metadata):  # type: ignore[no-untyped-def]
        weights["fc.bias"] = weights["fc.bias"] + 0.05  # a bug in reading one tensor
        return emit(spec, weights, options, metadata)

    monkeypatch.setattr(importing, "emit_imported", off_by_a_little)
    out = tmp_path / "out.onnx"
    code, printed = _import(source, out)
    assert code == 1, printed
    assert "disagrees" in printed and "verified" not in printed
    assert not out.exists()
