"""What every command line of the project shares: one-line errors and exit codes.

Exit codes: 0 success, 1 a check failed (parity, regression), 2 bad input. A user mistake never
prints a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

from resnet_common.errors import UserError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_main(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command line as given, for the "reproduce" line of what the command writes.
    args.command_line = [parser.prog, *(sys.argv[1:] if argv is None else argv)]
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(func(args) or 0)
    except UserError as err:
        return fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


def csv_list(kind: str, convert: Callable[[str], object] = str) -> Callable[[str], list[object]]:
    """An argparse type for comma-separated lists, with a clear message for bad items."""

    def parse(text: str) -> list[object]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty {kind} list")
        try:
            return [convert(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {kind} list {text!r}") from None

    return parse


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")

SEED_LIMIT = 2**63  # numpy, torch and Python's random all take a seed below this


def seed_int(text: str) -> int:
    """The one seed parser of every command line: an integer with 0 <= seed < 2**63."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"seed must be in 0 .. 2**63-1 ({SEED_LIMIT - 1}), got "
            + (text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)")
        )
    return value


def size_limits(text: str) -> dict[str, int]:
    """An argparse type for `--size-limit KEY=N[,KEY=N]` (see resnet_common.limits)."""
    from resnet_common.limits import parse_limits

    try:
        return parse_limits(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_float(text: str) -> float:
    """An argparse type for a finite number > 0 (durations, rates: `inf` would never end)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
