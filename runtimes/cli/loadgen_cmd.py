"""`bench-runtimes loadgen`: MLPerf LoadGen's scenarios with one of our runners as the SUT."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from resnet_common.cli import (
    Subparsers,
    add_json_flag,
    csv_list,
    positive_float,
    positive_int,
    precision_name,
    print_json,
    seed_int,
)
from resnet_common.errors import UserError, typed_line
from runtimes.base import PRECISIONS
from runtimes.cli.run_cmd import DEFAULT_OUT, add_size_limit
from runtimes.loadgen import INSTALL_HINT, SCENARIOS


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "loadgen",
        help="MLPerf LoadGen scenarios (SingleStream, MultiStream, Offline, Server) on an engine",
        description="Drive an engine with MLPerf LoadGen as the system under test: LoadGen "
        "issues the queries, measures the latencies and says VALID or INVALID by its own rules. "
        "Results append to OUT/loadgen.jsonl, LoadGen's summary and detail logs go to "
        "OUT/loadgen/<test>/, and OUT/report.{json,md,html} are rendered again with a LoadGen "
        "section.",
        epilog=f"Needs LoadGen: {INSTALL_HINT}. SingleStream reports the p90 latency, "
        "MultiStream the p99 of batches of --batch, Offline samples/s (batches of --batch), "
        "Server the completed samples/s at --target-qps and whether the p99 stayed within "
        "--target-latency-ms. LoadGen's early-stopping rule wants a few hundred queries: short "
        "--min-duration-ms runs are often INVALID, honestly. Exit 0: the tests ran (INVALID is "
        "a result, not an error); 2: bad input or LoadGen missing.\n\n"
        "Examples:\n"
        "  bench-runtimes loadgen --models resnet18 --runtimes ort-cpu --scenario Server\n"
        "  bench-runtimes loadgen --models resnet50 --runtimes ort-cpu,openvino --json",
    )
    p.add_argument(
        "--models", type=csv_list("model"), default=["resnet18"], help="(default resnet18)"
    )
    p.add_argument(
        "--runtimes", type=csv_list("runtime"), default=["ort-cpu"], help="(default ort-cpu)"
    )
    p.add_argument(
        "--scenario",
        type=csv_list("scenario"),
        default=["SingleStream", "Offline"],
        help=f"comma list of {', '.join(SCENARIOS)} (default SingleStream,Offline)",
    )
    p.add_argument(
        "--precision",
        type=precision_name,
        choices=PRECISIONS,
        default="fp32",
        help="fp16 and bf16: graphgen's float16 and bfloat16 graphs; int8: a QDQ graph "
        "quantized from the fp32 one; int8-bf16: that graph with its float parts in bf16 "
        "(default fp32)",
    )
    p.add_argument("--image-size", dest="image_size", type=positive_int, help="(default: model's)")
    p.add_argument("--batch", type=positive_int, default=8, help="Offline/MultiStream batch (8)")
    p.add_argument(
        "--min-duration-ms",
        dest="min_duration_ms",
        type=positive_int,
        default=10_000,
        help="LoadGen runs each test at least this long (default 10000; at most a day)",
    )
    p.add_argument(
        "--min-query-count",
        dest="min_query_count",
        type=positive_int,
        default=100,
        help="... and issues at least this many queries (default 100; at most 10,000,000)",
    )
    p.add_argument(
        "--target-qps",
        dest="target_qps",
        type=positive_float,
        default=10.0,
        help="Server: the Poisson arrival rate, queries per second (default 10; at most "
        "1,000,000, and min-query-count / target-qps at most a day)",
    )
    p.add_argument(
        "--target-latency-ms",
        dest="target_latency_ms",
        type=positive_float,
        default=100.0,
        help="Server: the bound the 99th-percentile latency must stay within (default 100)",
    )
    p.add_argument("--samples", type=positive_int, default=64, help="images in the sample library")
    p.add_argument("--threads", type=positive_int, help="intra-op threads (default: every core)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"(default {DEFAULT_OUT})")
    p.add_argument("--machine", help="label for this host in merged reports (default hostname)")
    add_size_limit(p)
    p.add_argument("--seed", type=seed_int, default=1, help="sample seed, 0 .. 2**63-1 (default 1)")
    add_json_flag(p, "one JSON object (the LoadGen results and the report's paths)")
    p.set_defaults(func=run)
    return p


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def run(args: argparse.Namespace) -> int:

    from runtimes import bounds, registry
    from runtimes.loadgen import LoadgenSettings, availability
    from runtimes.models import check_models
    from runtimes.sweep import (
        check_own_files,
        output_lock,
        prepare_out,
        refuse_if_in_use,
    )

    refuse_if_in_use(args.out)
    check_own_files(args.out)
    bounds.check_threads(args.threads)
    bad = [s for s in args.scenario if s not in SCENARIOS]
    if bad:
        raise UserError(f"unknown scenario {bad[0]!r}; choose from {', '.join(SCENARIOS)}")
    settings = [
        LoadgenSettings(
            scenario=s,
            min_duration_ms=args.min_duration_ms,
            min_query_count=args.min_query_count,
            samples=args.samples,
            batch=args.batch,
            target_qps=args.target_qps,
            target_latency_ms=args.target_latency_ms,
            seed=args.seed,
        )
        for s in args.scenario
    ]
    reason = availability()
    if reason is not None:
        raise UserError(reason)
    registry.check_names(args.runtimes)
    for name in args.runtimes:
        why = registry.availability(name)
        if why is not None:
            raise UserError(f"{name} is not available here: {why}")
        why = registry.refusal(name, args.precision)  # e.g. bf16 where the engine has no kernel
        if why is not None:
            raise UserError(f"--precision {args.precision}: {why}")
    check_models(
        args.models, precisions=[args.precision], batches=[args.batch], image_size=args.image_size
    )
    from runtimes import footprint

    footprint.check_jobs(  # the sample library is held in memory, as a batch of its own
        args.models,
        batches=[max(args.batch, args.samples)],
        precisions=[args.precision],
        image_size=args.image_size,
        parity=False,
        limits=footprint.limits_from(args.size_limits),
    )
    prepare_out(args.out)
    with output_lock(args.out):  # one writer per --out, as for `run`
        return _run(args, settings)


def _run(args: argparse.Namespace, settings: list[Any]) -> int:
    from rich.console import Console
    from rich.markup import escape

    from resnet_common.fileio import append_durable
    from resnet_common.records import ENVIRONMENT_FILE, LOADGEN_FILE
    from runtimes import environment, registry
    from runtimes.loadgen import headline, run_loadgen
    from runtimes.models import resolve
    from runtimes.sweep import usable_cores, write_json_atomic

    if not (args.out / ENVIRONMENT_FILE).exists():
        write_json_atomic(
            args.out / ENVIRONMENT_FILE,
            environment.collect(machine=args.machine, threads=args.threads),
        )
    console = Console(stderr=True)
    threads = args.threads or usable_cores()
    results: list[dict[str, Any]] = []
    for model_name in args.models:
        model = resolve(model_name, precision=args.precision, image_size=args.image_size)
        for runtime in args.runtimes:
            cls = registry.runner_class(runtime)
            for s in settings:
                console.print(f"LoadGen {s.scenario}: {escape(model_name)} on {runtime}")
                runner = cls(
                    model.path,
                    precision=args.precision,
                    batch_sizes=s.batches(),
                    threads=threads if cls.device == "cpu" else None,
                    macs=model.macs,
                )
                test = f"{_slug(model_name)}-{runtime}-{args.precision}-{s.scenario}"
                row: dict[str, Any] = {
                    "model": model_name,
                    "runtime": runtime,
                    "precision": args.precision,
                    "image_size": model.image_size,
                    "scenario": s.scenario,
                }
                try:
                    row |= run_loadgen(
                        runner,
                        input_name=model.input_name,
                        image_size=model.image_size,
                        settings=s,
                        out=args.out / "loadgen" / test,
                    )
                    row["headline"] = headline(row)
                except UserError:
                    raise
                except Exception as err:  # the engine failed: a result, as in the sweep
                    row |= {"error": typed_line(err)}
                append_durable(args.out / LOADGEN_FILE, json.dumps(row, default=str) + "\n")
                results.append(row)
    from reports.render import render
    from reports.schema import load_report
    from reports.summary import print_summary

    written = render([args.out], out=args.out)
    if args.json:
        print_json(
            {
                "results": results,
                "logs": str(args.out / "loadgen"),
                "report": {kind: str(path) for kind, path in written.items()},
            }
        )
        return 0
    print_summary(load_report(written["json"]), console=Console(width=180))
    print(f"{len(results)} LoadGen test(s); logs under {args.out / 'loadgen'}")
    print(f"report: {written['md']}, {written['html']}")
    return 0
