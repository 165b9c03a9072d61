"""The sweep's job construction for every registered engine, GPU ones included, on any machine.

No engine is faked: each test builds the real runner object the sweep would hand to `measure`,
through the real registry and `sweep.make_runner`, and stops where the engine itself would be
imported (`activate`). A sweep job on a GPU engine used to die before that point with an
AttributeError (`model.fixed_batch` on a type that had none), caught as a "failed" record on
every GPU machine; these tests fail on that kind of bug without a GPU.
"""

from __future__ import annotations

import pytest

from runtimes import registry
from runtimes.base import Runner
from runtimes.models import resolve
from runtimes.sweep import Job, SweepConfig, make_runner
from runtimes.timing import LoopConfig

TINY = "cifar-resnet20"
SWEEP_BATCHES = [1, 4, 16]


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    return resolve(TINY, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """A file that fixes its batch at 4, as `graphgen build --batch 4` and most exports do."""
    from graphgen.onnx_io import build_file
    from graphgen.spec import variant

    path = tmp_path_factory.mktemp("fixed") / "r20-b4.onnx"
    build_file(variant(TINY), path, batch=4)
    return resolve(str(path))


def sweep_config(tmp_path, timing="end-to-end") -> SweepConfig:
    return SweepConfig(
        models=[TINY],
        runtimes=registry.names(),
        batches=SWEEP_BATCHES,
        loop=LoopConfig(timing=timing),
        threads=2,
        out=tmp_path,
    )


@pytest.mark.parametrize("runtime", registry.names())
def test_every_engine_gets_a_runner_for_a_dynamic_graph(runtime, dynamic, tmp_path):
    runner = make_runner(Job(TINY, runtime, "fp32", 4), dynamic, sweep_config(tmp_path))
    cls = registry.runner_class(runtime)
    assert isinstance(runner, cls) and isinstance(runner, Runner)
    assert not runner.is_active
    assert runner.precision == "fp32" and runner.threads == 2 and runner.macs == dynamic.macs
    if cls.builds_for_batches:  # one engine over every batch of the sweep
        assert runner.batch_sizes == (1, 4, 16)
    else:
        assert runner.batch_sizes == (4,)
    expected_mode = "host" if cls.device == "cpu" else "end-to-end"
    assert runner.timing_mode == expected_mode
    info = runner.describe()  # what a record would say, before anything is loaded
    assert info["runtime"] == runtime and info["device"] == cls.device
    assert info["timing"] == expected_mode


@pytest.mark.parametrize("runtime", registry.names())
def test_a_fixed_batch_graph_is_built_for_its_own_batch_only(runtime, fixed, tmp_path):
    assert fixed.fixed_batch == 4
    runner = make_runner(Job(str(fixed.path), runtime, "fp32", 4), fixed, sweep_config(tmp_path))
    assert runner.batch_sizes == (4,)


@pytest.mark.parametrize("runtime", [n for n in registry.names() if n != "onnx-ref"])
def test_fp16_jobs_construct_where_the_engine_declares_fp16(runtime, dynamic, tmp_path):
    cls = registry.runner_class(runtime)
    if "fp16" not in cls.precisions:
        assert registry.refusal(runtime, "fp16", dynamic) is not None
        return
    runner = make_runner(Job(TINY, runtime, "fp16", 1), dynamic, sweep_config(tmp_path, "device"))
    assert runner.precision == "fp16"
    assert runner.timing_mode == ("host" if cls.device == "cpu" else "device")


@pytest.mark.parametrize("runtime", registry.names())
def test_a_gpu_engine_missing_here_is_a_skip_with_its_reason(runtime, dynamic):
    why = registry.refusal(runtime, "fp32", dynamic)
    assert why == registry.availability(runtime)
    if registry.runner_class(runtime).device == "cuda" and why is not None:
        assert why  # e.g. "tensorrt not installed", "no CUDA device ..."


def test_check_size_is_part_of_every_runner(dynamic, tmp_path):
    """The sweep calls check_size() on every runner: the base accepts, onnx-ref may refuse."""
    for runtime in registry.names():
        make_runner(Job(TINY, runtime, "fp32", 1), dynamic, sweep_config(tmp_path)).check_size()
