"""The paper's central claims, re-run: degradation (§4.2, Fig. 6, Table 6) and shortcuts (Table 3).

`degradation` trains a plain net and a ResNet at each depth with the same recipe and seed;
`shortcuts` trains plain and options A, B and C (§3.3) at one depth. Each run is a normal
`train.loop.fit` run folder under the experiment folder; the experiment then writes
`results.json` (every run's config, params and per-epoch curves, copied from its metrics),
`curves.png` (Fig. 6 style: thin dashed training error, bold validation error) and `report.md`
(a Table-6/Table-3-like table and statements computed from the numbers, never written by hand).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphgen.errors import SpecError
from graphgen.plan import expand
from graphgen.spec import IMAGENET_DEPTHS, Spec, cifar_spec
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_bytes, atomic_write_text
from train import metrics
from train.recipe import Recipe, cifar_recipe, scaled_to_epochs

RESULTS = "results.json"
CURVES = "curves.png"
REPORT = "report.md"
RESIDUAL_SHORTCUT = "A"  # §4.2: option A in all CIFAR cases, so plain and ResNet share params.


@dataclass(frozen=True)
class Settings:
    """What every run of one experiment shares: data, recipe and seed (§4.2's recipe by default)."""

    dataset: str = "synthetic"
    data: str | None = None
    epochs: int | None = None
    image_size: int = 32
    train_size: int = 2000
    val_size: int = 500
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    workers: int = 2
    progress: bool = True
    size_limits: tuple[tuple[str, int], ...] = ()  # raised sanity limits, as resnet-train's

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.dataset == "synthetic" and self.epochs is None:
            raise UserError("the synthetic set has no paper schedule: give --epochs E")

    def recipe(self, depth: int) -> Recipe:
        """§4.2's CIFAR recipe; --epochs keeps its shape (drops at 50% and 75% of the run)."""
        recipe = cifar_recipe(depth)
        if self.dataset == "synthetic":
            recipe = recipe.replace(val_split=0)
        return recipe.replace(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr)


@dataclass(frozen=True)
class PlannedRun:
    """One network of an experiment: its folder name, family (plain/resnet) and spec."""

    name: str
    family: str
    depth: int
    shortcut: str
    spec: Spec


def parse_depths(depths: Sequence[int]) -> list[int]:
    """CIFAR depths 6n+2 (§4.2), at least two distinct ones for a degradation comparison."""
    out = sorted(set(depths))
    for d in out:
        check_cifar_depth(d)
    if len(out) < 2:
        raise UserError(f"--depths needs at least two different depths, got {list(depths)}")
    return out


def check_cifar_depth(depth: int) -> None:
    """Experiments train the paper's CIFAR nets (§4.2): say so, whatever depth is asked for."""
    if depth >= 8 and (depth - 2) % 6 == 0:
        return
    why = " is an ImageNet depth (Table 1)" if depth in IMAGENET_DEPTHS else " is not 6n+2"
    raise SpecError(
        f"depth {depth}{why}: experiments train the paper's CIFAR nets (§4.2), depths 6n+2 "
        "for n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)"
    )


def degradation_runs(
    depths: Sequence[int], *, image_size: int, classes: int = 10
) -> list[PlannedRun]:
    """Plain and residual (option A) nets of each depth: the pairs of Fig. 6 and Table 6."""
    runs = []
    for family, shortcut in (("plain", "none"), ("resnet", RESIDUAL_SHORTCUT)):
        for depth in parse_depths(depths):
            spec = cifar_spec(depth, shortcut=shortcut, image_size=image_size, classes=classes)
            runs.append(PlannedRun(f"{family}-{depth}", family, depth, shortcut, spec))
    return runs


def shortcut_runs(depth: int, *, image_size: int, classes: int = 10) -> list[PlannedRun]:
    """Plain and options A, B, C at one depth: the CIFAR analogue of Table 3 (§3.3, §4.1)."""
    check_cifar_depth(depth)
    runs = []
    for shortcut in ("none", "A", "B", "C"):
        spec = cifar_spec(depth, shortcut=shortcut, image_size=image_size, classes=classes)
        family = "plain" if shortcut == "none" else "resnet"
        name = f"plain-{depth}" if shortcut == "none" else f"resnet-{depth}-{shortcut}"
        runs.append(PlannedRun(name, family, depth, shortcut, spec))
    return runs


def run_experiment(
    kind: str,
    runs: Sequence[PlannedRun],
    settings: Settings,
    out: Path,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every planned run (reusing finished ones), then write results, curves and report."""
    from train.loop import SUMMARY, TrainConfig, check_sizes, fit

    out = Path(out)
    configs = []
    for planned in runs:
        config = TrainConfig(
            spec=planned.spec,
            dataset=settings.dataset,
            data=settings.data,
            out=out / planned.name,
            recipe=settings.recipe(planned.depth),
            seed=settings.seed,
            device=settings.device,
            augment=settings.augment,
            workers=settings.workers,
            synthetic_train=settings.train_size,
            synthetic_val=settings.val_size,
            progress=settings.progress,
            size_limits=dict(settings.size_limits),
        )
        check_sizes(config)  # every run's sizes before the first folder exists
        configs.append(config)
    _check_writable(out)
    results = []
    for i, (planned, config) in enumerate(zip(runs, configs, strict=True), 1):
        run_dir = config.out
        head = (
            f"[{i}/{len(runs)}] {planned.name} (depth {planned.depth}, shortcut {planned.shortcut})"
        )
        tic = time.perf_counter()
        test_error = None
        if _finished(run_dir, config, SUMMARY):
            log(f"{head}: already trained in {run_dir}, reusing it")
            test_error = json.loads((run_dir / SUMMARY).read_text()).get("test_error")
        else:
            log(f"{head}: training in {run_dir}")
            resume = (run_dir / "config.json").is_file() and _same_config(run_dir, config)
            if (run_dir / "config.json").is_file() and not resume:
                raise UserError(
                    f"{run_dir} holds a run with different settings; pick another --out"
                )
            test_error = fit(config, resume=resume and _has_checkpoint(run_dir)).test_error
        records = metrics.read(run_dir / metrics.METRICS)
        if not records:
            raise UserError(f"{run_dir}: the run wrote no metrics (no training iterations?)")
        entry = _summarise(planned, config, records, test_error, time.perf_counter() - tic)
        results.append(entry)
        log(
            f"{head}: train err {_pct(entry['final_train_error'])}%, "
            f"val err {_pct(entry['final_val_error'])}% ({entry['seconds']:.0f} s)"
        )
    document = {
        "experiment": kind,
        "settings": dataclasses.asdict(settings),
        "runs": results,
        "findings": findings(kind, results),
    }
    atomic_write_text(out / RESULTS, json.dumps(document, indent=2) + "\n")
    plot_curves(kind, results, out / CURVES)
    atomic_write_text(out / REPORT, render_report(document))
    return document


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to --out {out}: {err.strerror or err}") from None


def _config_json(config: Any) -> Any:
    return json.loads(json.dumps(config.to_dict()))


def _same_config(run_dir: Path, config: Any) -> bool:
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    ignore = ("progress", "workers")
    mine = _config_json(config)
    return {k: v for k, v in saved.items() if k not in ignore} == {
        k: v for k, v in mine.items() if k not in ignore
    }


def _has_checkpoint(run_dir: Path) -> bool:
    from train import checkpoint

    return (run_dir / checkpoint.LAST).is_file()


def _finished(run_dir: Path, config: Any, summary: str) -> bool:
    return (run_dir / summary).is_file() and _same_config(run_dir, config)


def _effective_recipe(recipe: Recipe, records: list[dict[str, Any]]) -> Recipe:
    """The schedule the loop ran: with --epochs, milestones scaled from the run's iterations."""
    first = records[0]
    if recipe.epochs is None or not first.get("iteration"):
        return recipe
    iters = first["iteration"] // (first["epoch"] + 1)
    return scaled_to_epochs(recipe, epochs=recipe.epochs, iters_per_epoch=iters)


def _summarise(
    planned: PlannedRun,
    config: Any,
    records: list[dict[str, Any]],
    test_error: float | None,
    seconds: float,
) -> dict[str, Any]:
    """One run's row: the table's numbers are the last epoch's metrics, copied verbatim."""
    last = records[-1]
    return {
        "name": planned.name,
        "family": planned.family,
        "depth": planned.depth,
        "shortcut": planned.shortcut,
        "params": expand(planned.spec).params,
        "run_dir": str(config.out),
        "spec": planned.spec.to_dict(),
        "recipe": _effective_recipe(config.recipe, records).to_dict(),
        "epochs": len(records),
        "iterations": last.get("iteration"),
        "final_train_error": last["train_error"],
        "final_val_error": last.get("val_error"),
        "best_val_error": min(
            (r["val_error"] for r in records if r.get("val_error") is not None), default=None
        ),
        "test_error": test_error,
        "seconds": seconds,
        "curves": [
            {k: r.get(k) for k in ("epoch", "iteration", "train_error", "val_error", "lr")}
            for r in records
        ],
    }


# --- findings: statements computed from the numbers ----------------------------------------------


# One seed per network: training errors closer than this (1 point) are not told apart.
SEED_NOISE = 0.01


def findings(kind: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return degradation_findings(runs) if kind == "degradation" else shortcut_findings(runs)


def degradation_findings(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """§4.2: does the deeper plain net train worse, and does the deeper ResNet not?

    Compares the shallowest and deepest depths on final training error (the paper's claim is about
    optimisation, so training error, not validation error, is the evidence).
    """
    by = {(r["family"], r["depth"]): r["final_train_error"] for r in runs}
    depths = sorted({r["depth"] for r in runs})
    lo, hi = depths[0], depths[-1]
    plain_lo, plain_hi = by[("plain", lo)], by[("plain", hi)]
    res_lo, res_hi = by[("resnet", lo)], by[("resnet", hi)]
    degradation = plain_hi > plain_lo + SEED_NOISE
    resnet_not_worse = res_hi <= res_lo + SEED_NOISE
    resnet_beats_plain = res_hi < plain_hi - SEED_NOISE
    plain_errors = [by[("plain", d)] for d in depths]
    return {
        "shallow": lo,
        "deep": hi,
        "degradation_appears": degradation,
        "plain_train_error_rises_monotonically": all(
            b > a for a, b in zip(plain_errors, plain_errors[1:], strict=False)
        ),
        "deeper_resnet_not_worse": resnet_not_worse,
        "deeper_resnet_beats_deeper_plain": resnet_beats_plain,
        "residual_removes_degradation": degradation and resnet_not_worse and resnet_beats_plain,
        "plain_gap": plain_hi - plain_lo,
        "resnet_gap": res_hi - res_lo,
        "deep_resnet_minus_plain": res_hi - plain_hi,
        "noise": SEED_NOISE,
    }


def shortcut_findings(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Table 3 / §3.3: every option beats plain; the order of A, B, C by training and val error."""
    plain = next(r for r in runs if r["shortcut"] == "none")
    options = [r for r in runs if r["shortcut"] != "none"]
    val = [r for r in options if r["final_val_error"] is not None]
    return {
        "all_options_beat_plain_train": all(
            r["final_train_error"] < plain["final_train_error"] for r in options
        ),
        "order_by_train_error": [
            r["shortcut"] for r in sorted(options, key=lambda r: r["final_train_error"])
        ],
        "order_by_val_error": [
            r["shortcut"] for r in sorted(val, key=lambda r: r["final_val_error"])
        ],
    }


# --- curves -------------------------------------------------------------------------------------


def plot_curves(kind: str, runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Fig. 6: plain nets left, ResNets right; thin dashed = training error, bold = validation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if kind == "degradation":
        panels = [("plain", "plain networks"), ("resnet", "ResNets (option A)")]
        groups = [[r for r in runs if r["family"] == fam] for fam, _ in panels]
        titles = [t for _, t in panels]
        label = lambda r: f"{'plain' if r['family'] == 'plain' else 'ResNet'}-{r['depth']}"  # noqa: E731
    else:
        groups, titles = [list(runs)], [f"shortcut options at depth {runs[0]['depth']}"]
        label = lambda r: "plain" if r["shortcut"] == "none" else f"option {r['shortcut']}"  # noqa: E731
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), dpi=100, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    keys = sorted({r["depth"] if kind == "degradation" else r["shortcut"] for r in runs})
    for ax, group, title in zip(axes[0], groups, titles, strict=True):
        for r in group:
            colour = colours[keys.index(r["depth"] if kind == "degradation" else r["shortcut"])]
            xs = [c["iteration"] for c in r["curves"]]
            ax.plot(xs, [100 * c["train_error"] for c in r["curves"]], "--", lw=1, color=colour)
            val = [(x, c["val_error"]) for x, c in zip(xs, r["curves"], strict=True)]
            val = [(x, v) for x, v in val if v is not None]
            ax.plot([x for x, _ in val], [100 * v for _, v in val], "-", lw=2.2, color=colour,
                    label=label(r))  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylabel("error (%)")
        ax.grid(alpha=0.3)
        ax.legend(title="bold: val, dashed: train", fontsize=8, title_fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# --- report -------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render_report(document: dict[str, Any]) -> str:
    """Markdown: settings, the table (numbers = last epoch's metrics), computed statements."""
    kind, runs, s = document["experiment"], document["runs"], document["settings"]
    with_test = any(r["test_error"] is not None for r in runs)
    lines = [
        f"# Experiment: {kind}",
        "",
        f"Data: {s['dataset']}"
        + (
            f" ({s['train_size']} train / {s['val_size']} val images)"
            if s["dataset"] == "synthetic"
            else ""
        )
        + f", image size {runs[0]['spec']['image_size']}, seed {s['seed']}; "
        f"recipe: batch {runs[0]['recipe']['batch_size']}, lr {runs[0]['recipe']['lr']}, "
        f"{runs[0]['iterations']} iterations ({runs[0]['epochs']} epoch(s)), "
        f"lr drops at {list(runs[0]['recipe']['milestones'])}.",
        "",
        "Errors are % at the last epoch: training error is the epoch's running error under "
        "augmentation (as in the paper's Fig. 6), validation error is on the held-out split.",
        "",
    ]
    head = "| network | depth | shortcut | params | train err | val err |"
    rule = "|---|---|---|---|---|---|"
    if with_test:
        head, rule = head + " test err |", rule + "---|"
    lines += [head, rule]
    for r in runs:
        row = (
            f"| {r['name']} | {r['depth']} | {r['shortcut']} | {r['params']:,} | "
            f"{_pct(r['final_train_error'])} | {_pct(r['final_val_error'])} |"
        )
        lines.append(row + (f" {_pct(r['test_error'])} |" if with_test else ""))
    lines += ["", "## What the runs show", ""]
    f = document["findings"]
    if kind == "degradation":
        lines += _degradation_text(f, runs)
    else:
        lines += _shortcut_text(f, runs)
    lines += [
        "",
        "One seed per network; a difference of a few tenths of a percent is within run-to-run "
        "noise. The curves are in `curves.png`, every run's metrics in its own folder.",
        "",
    ]
    return "\n".join(lines)


def _degradation_text(f: dict[str, Any], runs: Sequence[dict[str, Any]]) -> list[str]:
    lo, hi = f["shallow"], f["deep"]
    by = {(r["family"], r["depth"]): r["final_train_error"] for r in runs}
    out = [
        f"- Degradation (plain-{hi} trains worse than plain-{lo} by more "
        f"than {100 * SEED_NOISE:.0f} point): "
        f"**{_yes(f['degradation_appears'])}** — final training error "
        f"{_pct(by[('plain', hi)])}% vs {_pct(by[('plain', lo)])}% "
        f"({100 * f['plain_gap']:+.2f} points).",
        f"- ResNet-{hi} trains no worse than ResNet-{lo} (within {100 * SEED_NOISE:.0f} point, "
        f"one seed's noise): **{_yes(f['deeper_resnet_not_worse'])}** "
        f"— {_pct(by[('resnet', hi)])}% vs {_pct(by[('resnet', lo)])}% "
        f"({100 * f['resnet_gap']:+.2f} points).",
        f"- ResNet-{hi} trains better than plain-{hi} by more than "
        f"{100 * SEED_NOISE:.0f} point: "
        f"**{_yes(f['deeper_resnet_beats_deeper_plain'])}** "
        f"({100 * f['deep_resnet_minus_plain']:+.2f} points).",
        "",
    ]
    if f["residual_removes_degradation"]:
        out.append(
            "The runs reproduce the paper's claim (§4.2, Fig. 6): the deeper plain net has the "
            "higher training error, and residual learning removes the gap."
        )
    elif f["degradation_appears"]:
        out.append(
            "Degradation appears in the plain nets, but these runs do not show residual learning "
            "fully removing it (see the points above)."
        )
    else:
        out.append(
            f"The degradation effect does **not** appear at this scale: plain-{hi} does not have "
            f"a higher final training error than plain-{lo}, so these runs neither confirm nor "
            "refute the paper's claim about residual learning."
        )
    return out


def _shortcut_text(f: dict[str, Any], runs: Sequence[dict[str, Any]]) -> list[str]:
    plain = next(r for r in runs if r["shortcut"] == "none")
    return [
        f"- Every shortcut option trains better than the plain net "
        f"({_pct(plain['final_train_error'])}% train error): "
        f"**{_yes(f['all_options_beat_plain_train'])}**.",
        f"- Options by final training error, best first: {', '.join(f['order_by_train_error'])}.",
        f"- Options by final validation error, best first: {', '.join(f['order_by_val_error'])} "
        "(the paper's Table 3 has C slightly better than B, B slightly better than A, all far "
        "better than plain).",
    ]
