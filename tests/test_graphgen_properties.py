"""Property-based checks over random specs: every valid one compiles, validates, runs and costs
the same by plan and by graph walk; every invalid one fails with one clear line."""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphgen.cli import main
from graphgen.cost import graph_cost
from graphgen.errors import SpecError
from graphgen.onnx_emit import max_opset
from graphgen.onnx_io import build, validate
from graphgen.plan import expand
from graphgen.spec import BLOCKS, Spec, spec_from_mapping
from tests._graphs import run_ort

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@st.composite
def specs(draw) -> Spec:
    stem = draw(st.sampled_from(["imagenet", "cifar"]))
    stages = draw(st.integers(1, 3))
    layers = tuple(draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages)))
    widths = sorted(
        draw(st.lists(st.sampled_from([4, 8, 12, 16]), min_size=stages, max_size=stages))
    )
    block = draw(st.sampled_from(["basic", "bottleneck", "preact_basic", "preact_bottleneck"]))
    shortcut = draw(st.sampled_from(["A", "B", "C", "none"]))
    expansion = 4 if block.endswith("bottleneck") else 1
    stem_width = draw(st.sampled_from([w for w in (4, 8) if w <= widths[0] * expansion]))
    stride = (4 if stem == "imagenet" else 1) * 2 ** (stages - 1)
    image = draw(st.integers(stride, stride * 2 + 7))
    return Spec(
        layers=layers,
        widths=tuple(widths),
        block=block,
        stem=stem,
        shortcut=shortcut,
        stride_at=draw(st.sampled_from(["1x1", "3x3"])),
        classes=draw(st.integers(1, 12)),
        image_size=image,
        stem_width=stem_width,
    )


@SETTINGS
@given(
    spec=specs(),
    opset=st.sampled_from(sorted({13, 17, max_opset()})),
    batch=st.integers(1, 3),
    fold=st.booleans(),
)
def test_random_valid_specs_compile_and_run(spec, opset, batch, fold):
    model = build(spec, opset=opset, fold=fold)
    validate(model)
    x = np.random.default_rng(0).standard_normal(
        (batch, 3, spec.image_size, spec.image_size), dtype=np.float32
    )
    y = run_ort(model, x)
    assert y.shape == (batch, spec.classes) and np.isfinite(y).all()
    plan = expand(spec)
    walked = graph_cost(model)
    assert walked.macs == plan.macs
    if not fold:  # folding trades BN scale/shift (2 per channel) for a conv bias (1 per channel)
        assert walked.params == plan.params


BAD_VALUES = {
    "layers": st.one_of(
        st.just([]), st.lists(st.integers(-3, 0), min_size=1, max_size=3), st.text(max_size=4)
    ),
    "widths": st.one_of(st.lists(st.integers(-5, 0), min_size=1, max_size=3), st.just("wide")),
    "block": st.text(max_size=6).filter(lambda s: s not in BLOCKS),
    "shortcut": st.text(max_size=3).filter(lambda s: s not in ("A", "B", "C", "none")),
    "classes": st.integers(-10, 0),
    "image_size": st.one_of(st.integers(-4, 0), st.just("big")),
    "depth": st.integers(-20, 300).filter(
        lambda d: d not in (18, 34, 50, 101, 152) and not (d >= 8 and (d - 2) % 6 == 0)
    ),
    "stride_at": st.sampled_from(["2x2", "5x5", ""]),
    "bogus_key": st.integers(),
}


@st.composite
def bad_specs(draw) -> dict:
    base = {"layers": [1, 1], "widths": [8, 16], "stem": "cifar", "image_size": 16, "classes": 3}
    key = draw(st.sampled_from(sorted(BAD_VALUES)))
    if key == "depth":
        return {"depth": draw(BAD_VALUES["depth"])}
    return base | {key: draw(BAD_VALUES[key])}


@SETTINGS
@given(data=bad_specs())
def test_random_invalid_specs_fail_with_one_line(data, tmp_path_factory, capsys):
    try:
        spec_from_mapping(data)
    except SpecError as err:
        assert "\n" not in str(err)
    else:
        raise AssertionError(f"accepted invalid spec {data}")
    folder = tmp_path_factory.mktemp("bad")
    path = folder / "spec.json"
    path.write_text(json.dumps(data))
    assert main(["build", "--spec", str(path), "-o", str(folder / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert not (folder / "m.onnx").exists()
