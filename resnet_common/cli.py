"""What every command line of the project shares: one style, one-line errors and exit codes.

Each CLI's top level is a registration list of command modules (`command_parser`); a command
module has `register(subparsers) -> its parser` (which sets `func=run`) and `run(args) -> exit
code`, so it can be imported and tested alone. A module may name the optional packages it needs
(`REQUIRES`, `INSTALL`): it is listed in --help all the same, saying what to install, and running
it without them is a one-line error. `run_main` parses, runs and turns user errors into one line.

Exit codes: 0 success, 1 a check failed (parity, regression), 2 bad input. A user mistake never
prints a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import difflib
import importlib.util
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, TextIO

from resnet_common.errors import UserError, first_line
from resnet_common.extras import install_command, missing_extra

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
Subparsers = argparse._SubParsersAction  # what `register(subparsers)` receives
HELP_FLAGS = ("-h", "--help", "--version")


class _ProbeFailed(Exception):
    """A usage error while `OneLineParser` looks for the words it does not know."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2. `default_command` is
    the command run when the first argument names none (resnet-train's flat form is `fit`).

    A word the parser does not know is named before a missing required argument (`graphgen
    build --depht 50` is a typo, not a missing --depth), with the closest flag; `suggest_word`
    turns a stray positional word into the flags meant (`resnet50` -> `--arch resnet50`)."""

    default_command: str | None = None
    suggest_word: Callable[[str], str | None] | None = None
    _given: list[str] | None = None
    _probing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(self._given, namespace)
        if extras and not self._probing:
            _UNKNOWN_WORDS_OWNER.set(_UNKNOWN_WORDS_OWNER.get() or self)
        return parsed, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        token = _UNKNOWN_WORDS_OWNER.set(None)
        try:
            parsed, extras = self.parse_known_args(args, namespace)
            if extras:  # said by the (sub)parser that met them, which knows what was meant
                owner = _UNKNOWN_WORDS_OWNER.get() or self
                owner.error(owner.unrecognized(extras))
            return parsed
        finally:
            _UNKNOWN_WORDS_OWNER.reset(token)

    def error(self, message: str) -> None:  # type: ignore[override]
        if self._probing:
            raise _ProbeFailed(message)
        if "required" in message and self._given:
            extras = self._unknown_words(self._given)
            if extras:
                message = self.unrecognized(extras)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")

    def unrecognized(self, extras: Sequence[str]) -> str:
        """argparse's "unrecognized arguments", with what each word probably meant."""
        flags = [
            flag
            for action in self._actions
            if action.help is not argparse.SUPPRESS
            for flag in action.option_strings
            if flag.startswith("--")
        ]
        hints: list[tuple[str, str]] = []
        for i, word in enumerate(extras):
            if word.startswith("-"):
                flag = word.split("=", 1)[0]
                close = difflib.get_close_matches(flag, flags, n=1, cutoff=0.6)
                if close:
                    hints.append((flag, close[0]))
            elif self.suggest_word is not None and not (i and extras[i - 1].startswith("-")):
                meant = self.suggest_word(word)  # (a word after an unknown flag is its value)
                if meant:
                    hints.append((word, meant))
        said = [f"did you mean {meant}?" if len(hints) == 1 else f"{word}: did you mean {meant}?"
                for word, meant in hints]  # fmt: skip
        hint = f" ({'; '.join(said)})" if said else ""
        return f"unrecognized arguments: {' '.join(extras)}{hint}"

    def _unknown_words(self, given: list[str]) -> list[str]:
        """The words of `given` this parser does not know, read as if nothing were required."""
        required: list[tuple[Any, bool]] = [(a, a.required) for a in self._actions]
        required += [(g, g.required) for g in self._mutually_exclusive_groups]
        for item, _ in required:
            item.required = False
        self._probing = True
        try:
            return super().parse_known_args(given, argparse.Namespace())[1]
        except _ProbeFailed:
            return []
        finally:
            self._probing = False
            for item, was in required:
                item.required = was


# The parser that met words it does not know, while a top-level `parse_args` runs.
_UNKNOWN_WORDS_OWNER: contextvars.ContextVar[OneLineParser | None] = contextvars.ContextVar(
    "unknown_words_owner", default=None
)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, but a description or epilog keeps its indented lines as written (the
    examples) and its paragraphs apart, filling only the prose."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                out.append(textwrap.fill(" ".join(prose), width, initial_indent=indent,
                                         subsequent_indent=indent))  # fmt: skip
                prose.clear()

        for line in text.splitlines():
            if line.startswith(" ") or not line.strip():
                flush()
                out.append(indent + line if line.strip() else "")
            else:
                prose.append(line.strip())
        flush()
        return "\n".join(out)


def add_alias(p: argparse._ActionsContainer, flag: str, action: argparse.Action) -> None:
    """An older spelling of `action`'s flag: accepted as it always was, not shown in --help
    (which teaches one spelling)."""
    extra: dict[str, Any] = {} if action.type is None else {"type": action.type}
    p.add_argument(
        flag,
        dest=action.dest,
        choices=action.choices,
        metavar=action.metavar,
        default=argparse.SUPPRESS,  # the canonical flag's default stands
        help=argparse.SUPPRESS,
        **extra,
    )


MAX_MESSAGE = 1000  # characters of one error line: a message names values, it never dumps them


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    if len(message) > MAX_MESSAGE:
        message = f"{message[: MAX_MESSAGE - 40]}... ({len(message):,} characters in all)"
    print(f"error: {message}", file=sys.stderr)
    return code


def missing_requirements(module: ModuleType) -> list[str]:
    """The packages a command module names in `REQUIRES` that are not installed here."""
    return [name for name in getattr(module, "REQUIRES", ()) if not _installed(name)]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


def command_parser(
    prog: str,
    *,
    description: str,
    epilog: str,
    commands: Sequence[ModuleType],
    version: str | None = None,
    default: str | None = None,
) -> OneLineParser:
    """A CLI's top-level parser: one subcommand per module of `commands`, in that order."""
    parser = OneLineParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter
    )
    if version is not None:
        parser.add_argument("--version", action="version", version=f"{prog} {version}")
    metavar = "COMMAND" if default is None else "[COMMAND]"
    subparsers = parser.add_subparsers(title="commands", metavar=metavar)
    for module in commands:
        before = len(subparsers._choices_actions)
        sub = module.register(subparsers)
        if sub.formatter_class is argparse.HelpFormatter:  # one look for every command's help
            sub.formatter_class = HelpFormatter
        name = sub.prog.split()[-1]
        listed = subparsers._choices_actions[before:]  # the line `prog --help` lists for it
        if name == default:
            for action in listed:
                action.help = f"{action.help}; the default (`{prog} ARGS` is `{prog} {name} ARGS`)"
        missing = missing_requirements(module)
        if missing:
            extra = module.EXTRA
            needs = (
                f"needs {' and '.join(missing)} (not installed here): install the {extra} "
                f"extra ({install_command(extra)})"
            )
            for action in listed:
                action.help = f"{action.help} [{needs}]"
            sub.description = f"{needs[0].upper()}{needs[1:]}. {sub.description or ''}".rstrip()
            sub.set_defaults(unavailable=f"{prog} {name} {needs}")
    parser.default_command = default
    return parser


def with_default_command(parser: OneLineParser, argv: Sequence[str]) -> list[str]:
    """argv with the parser's default command in front when its first word names no command
    (`resnet-train --depth 20 ...` is `resnet-train fit --depth 20 ...`)."""
    argv = list(argv)
    default = parser.default_command
    if default is None or (argv and (argv[0] in HELP_FLAGS or argv[0] in _commands(parser))):
        return argv
    return [default, *argv]


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }


EXIT_PIPE_CLOSED = 128 + 13  # what a shell shows for a process killed by SIGPIPE


def run_main(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None
) -> int:
    """Parse, run, and turn what a user can cause into one line and an exit code: bad input
    (exit 2), Ctrl-C (130), and a reader that closed our stdout (`graphgen info --json | head
    -c 10`: exit 141, silently, as a command killed by SIGPIPE would)."""
    with _printable_streams():
        try:
            try:
                return _run(build_parser, argv)
            finally:  # also after --help's SystemExit: a closed pipe shows here, not at exit
                sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_PIPE_CLOSED


def _run(build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None) -> int:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    if isinstance(parser, OneLineParser):
        args = parser.parse_args(with_default_command(parser, given))
    else:
        args = parser.parse_args(given)
    # The command line as given, for the "reproduce" line of what the command writes.
    args.command_line = [parser.prog, *given]
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    unavailable = getattr(args, "unavailable", None)
    if unavailable:
        return fail(unavailable)
    try:
        with json_stdout() if getattr(args, "json", False) else contextlib.nullcontext():
            return int(func(args) or 0)
    except UserError as err:
        return fail(first_line(err))
    except ImportError as err:  # an optional package the command reached for is not installed
        message = missing_extra(err)
        if message is None:
            raise
        return fail(message)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


def _silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null: what is still buffered, and Python's own
    flush at exit, then go nowhere instead of raising BrokenPipeError again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # a test's StringIO: nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def _printable_streams() -> Iterator[None]:
    """stdout and stderr that print any file name: a name that is not UTF-8 (`$'\\xff.onnx'`, a
    legal Linux name) is printed with backslash escapes instead of failing the command after
    its work is done with a UnicodeEncodeError. The streams' settings are put back after."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
            changed.append(stream)
    try:
        yield
    finally:
        for stream in changed:
            with contextlib.suppress(ValueError, OSError):  # closed meanwhile
                stream.reconfigure(errors="strict")


# --- --json: one JSON document on stdout, and nothing else there -----------------------------

_JSON_STREAM: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(
    "json_stream", default=None
)


def add_json_flag(p: argparse._ActionsContainer, what: str = "one JSON object") -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} on stdout instead of the text (progress and warnings go to stderr)",
    )


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    """While a `--json` command runs, whatever it prints goes to stderr; `print_json` alone
    writes to stdout, so stdout holds one JSON document that a script can read."""
    token = _JSON_STREAM.set(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_STREAM.reset(token)


def print_json(data: Any) -> None:
    """Print `data` as JSON on the command's stdout (the real one under `json_stdout`)."""
    stream = _JSON_STREAM.get() or sys.stdout
    stream.write(json.dumps(data, indent=2) + "\n")
    stream.flush()


# --- argparse types ----------------------------------------------------------------------------

# The two spellings of a float type, both accepted wherever either is taken: `--dtype` shows
# ONNX's element type names (float16), `--precision` the records' short names (fp16).
FLOAT_SPELLINGS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_name(text: str) -> str:
    """An argparse type for `--dtype`: fp16 is float16; other names are checked where used."""
    return FLOAT_SPELLINGS.get(text, text)


def precision_name(text: str) -> str:
    """An argparse type for `--precision`: float16 is fp16; other names are checked where used."""
    return {long: short for short, long in FLOAT_SPELLINGS.items()}.get(text, text)


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
