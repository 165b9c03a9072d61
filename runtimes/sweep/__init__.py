"""A sweep: models x runtimes x precisions x batch sizes, one record streamed per combination.

Each record is appended to `results.jsonl` the moment it exists (flush + fsync), so a sweep
killed at any point loses at most the combination in flight, and `--resume` skips every key
already there. One writer per output folder: the sweep holds an exclusive lock on it
(`resnet_common.locks`), so a second run or a `--resume` beside a live one is refused.

By concern: `config` (what runs), `outdir` (the output folder, its lock and the results
writer), `resume` (the in-flight marker, the crash log, and what --resume makes of a run that
died), `record` (one job into its record), `scheduler` (`Sweep`: which jobs, in what order).
"""

from runtimes.sweep.config import Job, SweepConfig, jobs, usable_cores
from runtimes.sweep.outdir import (
    ResultsWriter,
    check_own_files,
    output_lock,
    prepare_out,
    refuse_if_in_use,
    write_json_atomic,
)
from runtimes.sweep.record import make_runner
from runtimes.sweep.scheduler import Sweep

__all__ = [
    "Job",
    "ResultsWriter",
    "check_own_files",
    "Sweep",
    "SweepConfig",
    "jobs",
    "make_runner",
    "output_lock",
    "prepare_out",
    "refuse_if_in_use",
    "usable_cores",
    "write_json_atomic",
]
