"""Property-based checks over random specs: every valid one compiles, validates, runs and costs
the same by plan and by graph walk; every invalid one fails with one clear line."""

import json

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from graphgen.blocks import BLOCK_KINDS
from graphgen.cli import main
from graphgen.cost import graph_cost
from graphgen.errors import SpecError
from graphgen.onnx_emit import max_opset
from graphgen.onnx_io import build, validate
from graphgen.plan import expand
from graphgen.spec import Spec, spec_from_mapping
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
    "block": st.text(max_size=6).filter(lambda s: s not in BLOCK_KINDS),
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


# --- near-valid spec dicts with values of any type ----------------------------------------------

ANY_VALUE = st.one_of(
    st.integers(-3, 20),
    st.integers(10**6, 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(
        [
            "A",
            "B",
            "C",
            "none",
            "basic",
            "bottleneck",
            "preact_basic",
            "cifar",
            "imagenet",
            "1x1",
            "3x3",
            "cifar10",
        ]
    ),  # fmt: skip
    st.lists(st.one_of(st.integers(-2, 4), st.integers(10**6, 10**30)), max_size=4),
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
PLAUSIBLE_LIMITS = [{"params": 10}, {"blocks": 1}, {"macs": 10**9}]
SPEC_MUTATION_KEYS = [
    "layers", "widths", "block", "stem", "shortcut", "stride_at", "classes", "image_size",
    "stem_width", "name", "depth", "dataset", "size_limit", "colour",
]  # fmt: skip


SMALL_LISTS = st.lists(st.integers(1, 2), min_size=2, max_size=2)
PLAUSIBLE = {
    "layers": SMALL_LISTS,
    "widths": st.lists(st.sampled_from([4, 8, 16]), min_size=2, max_size=2),
    "block": st.sampled_from(tuple(BLOCK_KINDS)),
    "stem": st.just("cifar"),
    "shortcut": st.sampled_from(["A", "B", "C", "none"]),
    "stride_at": st.sampled_from(["1x1", "3x3"]),
    "classes": st.integers(1, 5),
    "image_size": st.integers(4, 24),
    "stem_width": st.sampled_from([2, 4, 8]),
    "name": st.from_regex(r"[a-z][a-z0-9._-]{0,8}", fullmatch=True),
    "depth": st.sampled_from([6, 8, 11, 14, 20]),
    "dataset": st.sampled_from(["cifar10", "imagenet"]),
    "size_limit": st.sampled_from(PLAUSIBLE_LIMITS),
    "colour": st.integers(),
}


@st.composite
def near_valid_specs(draw) -> dict:
    """A tiny valid spec with one to three keys set to anything. `size_limit` only ever lowers
    the limits: raising them lets a user ask for a network that really takes hours."""
    spec: dict = {"layers": [1, 1], "widths": [4, 8], "stem": "cifar", "image_size": 8,
                  "classes": 3, "stem_width": 4}  # fmt: skip
    for key in draw(st.lists(st.sampled_from(SPEC_MUTATION_KEYS), min_size=1, max_size=3)):
        if key == "depth":  # a depth comes alone, or with layers that may agree
            spec = {k: v for k, v in spec.items() if k not in ("layers", "widths")}
        value = draw(st.one_of(PLAUSIBLE[key], PLAUSIBLE[key], ANY_VALUE))
        if key == "size_limit" and isinstance(value, dict) and value not in PLAUSIBLE_LIMITS:
            continue  # only ever lower the limits (see above)
        spec[key] = value
    return spec


@settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=near_valid_specs())
def test_any_spec_dict_builds_a_valid_graph_or_fails_in_one_line(data, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("any")
    path = folder / "spec.json"
    path.write_text(json.dumps(data))
    out = folder / "m.onnx"
    code = main(["build", "--spec", str(path), "-o", str(out)])  # an escaping exception fails
    err = capsys.readouterr().err.strip()
    event("built" if code == 0 else "refused")
    if code == 0:
        onnx.checker.check_model(str(out), full_check=True)
        assert err == ""
    else:
        assert code == 2 and err.startswith("error:") and "\n" not in err, err
        assert sorted(p.name for p in folder.iterdir()) == ["spec.json"]


def test_a_huge_integer_in_a_spec_is_a_spec_error():
    """A bound of the document reader (30 digits) is a SpecError like any other bad value (found
    by hypothesis: 'bogus_key' set to a 31-digit integer escaped as another error type)."""
    with pytest.raises(SpecError, match="at most 30"):
        spec_from_mapping({"depth": 20, "bogus_key": 10**40})
