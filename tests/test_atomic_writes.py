"""Atomic writes as readers see them: the old file stays whole until the new one replaces it."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_common import fileio


def test_a_failed_rewrite_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    fileio.atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), fileio.atomic_writer(target) as f:
        f.write(b"half of the new report")
        f.flush()
        assert target.read_text() == "old\n"  # while the new one is written, readers see the old
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
