"""`bench-runtimes run`: sweep models x runtimes x batches x precisions, stream, render, summarise.

Defaults are sized for the README's main command to finish in a few minutes on a small CPU box:
ResNet-18 and ResNet-50 at batch 1 on every usable engine, 0.5 s warm-up, 3 s timed (trtexec's
defaults are 200 ms and 3 s).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from resnet_common.cli import (
    Subparsers,
    add_json_flag,
    csv_list,
    fail,
    positive_float,
    positive_int,
    precision_name,
    print_json,
    seed_int,
    size_limits,
)
from resnet_common.errors import UserError
from runtimes import bounds, footprint, models, registry
from runtimes.base import MODES, TIMING_MODES
from runtimes.sweep import (
    Sweep,
    SweepConfig,
    check_own_files,
    output_lock,
    prepare_out,
    refuse_if_in_use,
)
from runtimes.timing import LoopConfig

DEFAULT_OUT = Path("bench-results")


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="benchmark latency and throughput across engines; write results and reports",
        description="Time each (model, runtime, precision, batch): warm-up, then a timed loop. "
        "Results stream to OUT/results.jsonl; OUT/report.{json,md,html} are rendered at the end.",
        epilog="With no arguments: resnet18 and resnet50 at batch 1 on every engine usable here. "
        "CPU engines are timed with perf_counter_ns; GPU engines with device events on "
        "device-resident buffers (--timing device) or with host arrays in and out "
        "(--timing end-to-end). Exit 0: the sweep ran (failed results are recorded in the "
        "report, not an exit status); 2: bad input, or no usable engine among those asked for."
        "\n\nExamples:\n"
        "  bench-runtimes run\n"
        "  bench-runtimes run --models resnet50 --runtimes ort-cpu,openvino --batch 1,8\n"
        "  bench-runtimes run --models resnet50 --runtimes trt,ort-cuda --precision fp32,fp16\n"
        "  bench-runtimes run --resume --out bench-results    # continue a killed sweep",
    )
    p.add_argument(
        "--models",
        type=csv_list("model"),
        help="comma list of variant names or .onnx paths "
        f"(default: {','.join(models.DEFAULT_MODELS)})",
    )
    p.add_argument(
        "--runtimes",
        type=csv_list("runtime"),
        help="comma list of engines (default: every engine usable here but torch-compile; "
        "see `list`)",
    )
    p.add_argument(
        "--batch",
        type=csv_list("batch", positive_int),
        help="batch sizes, comma list, e.g. 1,8,32 (default 1)",
    )
    p.add_argument(
        "--precision",
        type=csv_list("precision", precision_name),
        help="comma list of fp32, fp16, bf16, int8, int8-bf16 (default fp32; fp16 and bf16 run "
        "graphgen's float16 and bfloat16 graphs, int8 a QDQ graph quantized from the fp32 one "
        "(docs/int8.md), int8-bf16 that graph with its float parts in bf16 where the engine "
        "offers it (docs/fastest.md))",
    )
    p.add_argument(
        "--mode",
        dest="modes",
        type=csv_list("mode"),
        help="comma list of latency (one synchronous stream, default) and throughput (several "
        "requests in flight, as the engine's own benchmark tool runs it: images completed per "
        "second of wall time); recorded in each record",
    )
    p.add_argument(
        "--image-size",
        dest="image_size",
        type=positive_int,
        help="input height and width in pixels (default: the model's own, 224 for ImageNet "
        "variants, 32 for CIFAR)",
    )
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--warmup", type=positive_int, help="warm-up iterations")
    warm.add_argument("--warmup-s", dest="warmup_s", type=positive_float, help="(default 0.5)")
    timed = p.add_mutually_exclusive_group()
    timed.add_argument("--iterations", type=positive_int, help="timed iterations")
    timed.add_argument(
        "--duration-s", dest="duration_s", type=positive_float, help="(default 3, >= 10 runs)"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        help="intra-op threads of every CPU engine (default: every usable core, the same for all; "
        "recorded in each record)",
    )
    p.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load the jobs that fit in memory together and time them in shuffled rounds, so a "
        "slow phase of the machine falls on all of them alike; the report then gives paired "
        "ratios with their 95 percent intervals (default: on when more than one engine, model, precision or "
        "mode is timed)",
    )
    p.add_argument("--timing", choices=TIMING_MODES, help="GPU engines only (default device)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"(default {DEFAULT_OUT})")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep OUT holds: its own models, engines and settings as recorded "
        "(flags given now replace them), skipping results already there; a job killed from "
        "outside while it ran (SIGKILL, the OOM killer) is measured again once, one that "
        "crashed the process is not",
    )
    p.add_argument(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="with --resume (implied): measure the failed jobs again too",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results already in OUT (without it, or --resume, a folder that holds "
        "results is refused: it may be the baseline `compare` needs)",
    )
    p.add_argument(
        "--no-parity", dest="parity", action="store_false", default=None, help="skip parity"
    )
    p.add_argument("--machine", help="label for this host in merged reports (default hostname)")
    p.add_argument("--seed", type=seed_int, help="input seed, 0 .. 2**63-1 (default 1)")
    add_size_limit(p)
    add_json_flag(
        p, "one JSON object (this run's records, the report's paths, the engines skipped)"
    )
    p.set_defaults(func=run)
    return p


def add_size_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size-limit",
        dest="size_limits",
        type=size_limits,
        metavar="memory=BYTES",
        help="the memory to assume free (default: what the machine has now); every job's "
        "estimated input, activation and weight memory is checked against it before anything "
        "is built",
    )


# What a sweep folder records of its sweep (environment.json's "sweep"), so that --resume
# continues that sweep rather than the default one; the defaults of what was not given.
SWEEP_DEFAULTS: dict[str, Any] = {
    "models": None,
    "runtimes": None,
    "batch": [1],
    "precision": ["fp32"],
    "modes": ["latency"],
    "image_size": None,
    "threads": None,
    "seed": 1,
    "parity": True,
    "interleave": None,
    "timing": "device",
}
LOOP_FLAGS = ("warmup", "warmup_s", "iterations", "duration_s")


def recorded_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """What `run` records in environment.json to continue this sweep with --resume."""
    return {k: getattr(args, k) for k in (*SWEEP_DEFAULTS, *LOOP_FLAGS)}


def _fill_from_folder(args: argparse.Namespace) -> None:
    """--resume: each sweep setting not given now is the one OUT's sweep recorded."""
    from resnet_common.documents import read_document
    from resnet_common.records import ENVIRONMENT_FILE

    path = args.out / ENVIRONMENT_FILE
    if not path.is_file():
        return
    env = read_document(path, what="environment file", max_bytes=2**22)
    recorded = env.get("sweep") if isinstance(env, dict) else None
    if not isinstance(recorded, dict):
        if args.models is None and args.runtimes is None and isinstance(env, dict):
            # a folder of an older version: the default sweep is very likely not its own
            command = env.get("command")
            shown_command = (
                f" (it was made by `{command[:200]}`)" if isinstance(command, str) else ""
            )
            raise UserError(
                f"{path} records no sweep to resume (written by an older version){shown_command}:"
                " give its --models and --runtimes with --resume"
            )
        return
    given_loop = {k for k in LOOP_FLAGS if getattr(args, k, None) is not None}
    names = [*SWEEP_DEFAULTS, *([] if given_loop else LOOP_FLAGS)]
    for name in names:
        if getattr(args, name, None) is None and recorded.get(name) is not None:
            setattr(args, name, _checked_setting(name, recorded[name], path))


def _checked_setting(name: str, value: object, path: Path) -> object:
    """A recorded setting of the type its flag gives, else a UserError naming it."""
    lists = {"models": str, "runtimes": str, "batch": int, "precision": str, "modes": str}
    if name in lists:
        kind = lists[name]
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        ):
            return value
    elif name in ("parity", "interleave"):
        if isinstance(value, bool):
            return value
    elif name == "timing":
        if value in TIMING_MODES:
            return value
    elif name in ("warmup_s", "duration_s"):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise UserError(
        f"{path}: the recorded sweep's {name} is not one --resume can use; give --{name} "
        "on the command line, or start again with --overwrite"
    )


def config_from_args(args: argparse.Namespace) -> tuple[SweepConfig, dict[str, str]]:
    """The sweep config and the engines skipped before it starts ({engine: why})."""
    from resnet_common.records import RESULTS_FILE

    held = args.out / RESULTS_FILE
    refuse_if_in_use(args.out)  # a live run's folder: say whose, before anything else
    check_own_files(args.out)
    if args.retry_failed:
        args.resume = True
    if args.resume and args.overwrite:
        flag = "--retry-failed" if args.retry_failed else "--resume"
        raise UserError(f"{flag} keeps OUT's results and --overwrite replaces them: pick one")
    if args.resume:
        from runtimes.sweep.resume import check_resumable

        check_resumable(args.out)
        _fill_from_folder(args)
    for name, default in SWEEP_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, default)
    if not args.resume and not args.overwrite and held.is_file() and held.stat().st_size > 0:
        raise UserError(
            f"{args.out} already holds results ({held}): --resume to continue them, "
            "--overwrite to replace them, or another --out"
        )
    if args.models is not None:
        args.models = list(dict.fromkeys(args.models))  # de-duplicated, order kept
        models.check_precisions(args.precision)
        models.check_models(
            args.models, precisions=args.precision, batches=args.batch, image_size=args.image_size
        )
    models.check_precisions(args.precision)
    bad_modes = [m for m in args.modes if m not in MODES]
    if bad_modes:
        raise UserError(f"unknown mode {bad_modes[0]!r}; choose from {', '.join(MODES)}")
    skipped: dict[str, str] = {}
    if args.runtimes is not None:
        runtimes = list(dict.fromkeys(args.runtimes))
        registry.check_names(runtimes)
        why = {name: registry.availability(name) for name in runtimes}
        if all(why.values()):
            detail = "; ".join(f"{name}: {reason}" for name, reason in why.items())
            raise UserError(f"no usable engine among those asked for ({detail})")
    else:
        runtimes, skipped = registry.usable()
        if not runtimes:
            raise UserError("no engine is usable here; see `bench-runtimes list`")
    bounds.check_loop(
        warmup=args.warmup,
        warmup_s=args.warmup_s,
        iterations=args.iterations,
        duration_s=args.duration_s,
    )
    bounds.check_threads(args.threads)
    loop = LoopConfig(
        warmup=args.warmup,
        warmup_s=None if args.warmup else (args.warmup_s or 0.5),
        iterations=args.iterations,
        duration_s=None if args.iterations else (args.duration_s or 3.0),
        timing=args.timing,
    )
    chosen_models = list(args.models or models.DEFAULT_MODELS)
    footprint.check_jobs(
        chosen_models,
        batches=args.batch,
        precisions=args.precision,
        image_size=args.image_size,
        parity=args.parity,
        limits=footprint.limits_from(args.size_limits),
    )
    interleave = args.interleave
    if interleave is None:
        interleave = (
            len(chosen_models) > 1
            or len(runtimes) > 1
            or len(set(args.precision)) > 1
            or len(set(args.modes)) > 1
        )
    config = SweepConfig(
        models=chosen_models,
        runtimes=runtimes,
        batches=list(dict.fromkeys(args.batch)),
        precisions=list(dict.fromkeys(args.precision)),
        image_size=args.image_size,
        loop=loop,
        threads=args.threads,
        out=args.out,
        resume=args.resume,
        retry_failed=args.retry_failed,
        parity=args.parity,
        seed=args.seed,
        interleave=interleave,
        modes=list(dict.fromkeys(args.modes)),
    )
    return config, skipped


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    config, skipped = config_from_args(args)
    try:
        done = sweep_and_render(args, config, skipped, Console(stderr=True))
    except KeyboardInterrupt:
        again = _again(args, "--retry-failed" if args.retry_failed else "--resume")
        return fail(
            f"interrupted; every finished result is in {config.out / 'results.jsonl'}: "
            f"continue with `{again}`",
            130,
        )
    left = done.pop("unfinished")
    status = 0
    if left:  # a resume that leaves work undone is not a success, whatever it measured
        status = fail(
            f"{len(left)} job(s) not measured, killed from outside twice ({left[0]}"
            + (", ..." if len(left) > 1 else "")
            + f"): continue with `{_again(args, '--retry-failed')}`",
            1,
        )
    if args.json:
        print_json(done)
        return status
    from reports.schema import load_report
    from reports.summary import print_summary

    print_summary(
        load_report(done["report"]["json"]),
        console=Console(width=None if sys.stdout.isatty() else 180),
    )
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"{len(done['records'])} result(s) this run; results: {done['results']}")
    print(f"report: {done['report']['md']}, {done['report']['html']}")
    return status


def _again(args: argparse.Namespace, flag: str) -> str:
    """This command line again with `flag` (--resume or --retry-failed), --overwrite dropped."""
    given = getattr(args, "command_line", ["bench-runtimes", "run"])
    words = [w for w in given if w not in ("--overwrite", "--resume", "--retry-failed")]
    return shlex.join([*words, flag])


def sweep_and_render(
    args: argparse.Namespace, config: SweepConfig, skipped: dict[str, str], console: Any
) -> dict[str, Any]:
    """Run the sweep under OUT's lock and render its report: what `run --json` prints and
    `runtimes.run` returns (this run's records, the results file, the report's paths, the
    engines skipped). A KeyboardInterrupt leaves every finished record in the results file."""
    from rich.markup import escape

    from reports.render import render
    from runtimes import environment

    prepare_out(config.out)
    with output_lock(config.out):  # one writer for the sweep and its report
        for name, why in skipped.items():
            console.print(f"[yellow]skipped[/] {escape(f'{name}: {why}')}")
        env = environment.collect(
            machine=args.machine, threads=args.threads, precisions=config.precisions
        )
        env["command"] = shlex.join(getattr(args, "command_line", ["bench-runtimes", "run"]))
        # what --resume continues (environment.json is kept from the first run)
        env["sweep"] = recorded_sweep(args) | {
            "models": config.models,
            "runtimes": config.runtimes,
            "interleave": config.interleave,
        }
        config.peaks = env.get("matmul_peaks")
        sweep = Sweep(config)
        records = _run_with_progress(sweep, env, console)
        for warning in sweep.warnings:
            console.print(f"[yellow]warning[/] {escape(warning)}")
        left = [job.label for job in sweep.unfinished()]
        written = render([config.out], out=config.out)
    return {
        "unfinished": left,
        "records": records,
        "results": str(config.out / "results.jsonl"),
        "report": {kind: str(path) for kind, path in written.items()},
        "skipped": skipped,
    }


def _run_with_progress(sweep: Sweep, env: dict[str, Any], console: Any) -> list[dict[str, Any]]:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from runtimes.sweep import jobs

    total = sum(1 for _ in jobs(sweep.config))
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=not sys.stderr.isatty(),
    )
    if not console.is_terminal:  # a log, not a screen: one plain line per step, as it happens
        done = [0]

        def say(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        def line(job: Any, record: dict[str, Any]) -> None:
            done[0] += 1
            if not record:
                status = "already in results (--resume)"
            elif record["status"] == "ok":
                status = f"ok, median {record['latency_ms']['median']:.3f} ms"
            else:
                status = f"{record['status']}: {record.get('reason') or ''}"
            say(f"[{done[0]}/{total}] {job.label}: {status}")

        def group(number: int, members: list[Any], rounds: int) -> None:
            say(f"timing group {number}: {len(members)} job(s) loaded together, {rounds} rounds")

        interleaved = sweep.config.interleave
        return sweep.run(
            # interleaved, a record comes only once its whole group is timed: say each load
            on_start=(lambda job: say(f"loading {job.label}")) if interleaved else lambda job: None,
            on_record=line,
            on_group=group,
            environment=env,
        )
    with progress:
        task = progress.add_task("starting", total=total)
        return sweep.run(
            # a model's path is data, never markup: "resnet[v2].onnx" must not lose "[v2]"
            on_start=lambda job: progress.update(task, description=escape(job.label)),
            on_record=lambda job, record: progress.advance(task),
            environment=env,
        )
