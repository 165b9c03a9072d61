"""Small YAML and JSON documents a user hands in (spec files, a run's config.json), read without
trusting them.

A spec is a few keys of numbers and names, so anything far from that is refused in one line
before it can cost memory or time: a file that is not a regular file (`/dev/zero`, a named
pipe, which would block forever), or larger than `MAX_DOCUMENT_BYTES`; a YAML alias bomb (2 KB
that expands to a billion values: `MAX_VALUES` counts every alias where it is used); nesting
past `MAX_DEPTH` (the parsers recurse); integers past `MAX_INT_DIGITS` digits (Python refuses to
print one of 4300); and a key given twice in one mapping, which YAML and JSON parsers accept
silently, the last value winning.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from resnet_common.errors import UserError, shown
from resnet_common.limits import format_bytes

MAX_DOCUMENT_BYTES = 2**20  # a spec is a few hundred bytes; a run's config.json a few KB
MAX_VALUES = 10_000  # values in the parsed document, aliases counted each time they are used
MAX_DEPTH = 32  # levels of nesting (a spec has two: a mapping of lists)
MAX_INT_DIGITS = 30  # far past 2**63 (19 digits); far below what Python refuses to print


class DocumentError(UserError):
    """A document that is not a small, plain YAML or JSON mapping."""


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISFIFO, "a named pipe"),
)


def read_capped(path: str | Path, *, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, checked before it is opened: a
    device never ends, a named pipe blocks until someone writes to it."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise DocumentError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        raise DocumentError(f"{what} {path} is {kind}, not a regular file")
    if info.st_size > max_bytes:
        raise DocumentError(
            f"{what} {path} is {format_bytes(info.st_size)}, larger than the "
            f"{format_bytes(max_bytes)} a {what} can be"
        )
    try:  # O_NONBLOCK: should it have become a named pipe since, open() does not wait
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise DocumentError(f"cannot read {what} {path}: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DocumentError(f"{what} {path} is not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DocumentError(f"{what} {path} is larger than the {format_bytes(max_bytes)} allowed")
    return data


def read_document(
    path: str | Path, *, what: str = "spec file", max_bytes: int = MAX_DOCUMENT_BYTES
) -> object:
    """A YAML or JSON file (by its suffix) parsed and checked: small, shallow, unique keys."""
    path = Path(path)
    data = read_capped(path, what=what, max_bytes=max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not a text file (expected YAML or JSON)") from None
    parsed = parse_json(text, str(path)) if path.suffix.lower() == ".json" else parse_yaml(
        text, str(path)
    )  # fmt: skip
    check_bounded(parsed, source=str(path))
    return parsed


def strict_json_loads(text: str) -> object:
    """json.loads refusing a key given twice and integers past MAX_INT_DIGITS digits (ValueError);
    json.JSONDecodeError and RecursionError pass through for the caller to name."""
    return json.loads(text, object_pairs_hook=_unique_pairs, parse_int=_checked_int)


def parse_json(text: str, source: str) -> object:
    """JSON with duplicated keys and overlong integers refused."""
    try:
        return strict_json_loads(text)
    except json.JSONDecodeError as err:
        raise DocumentError(f"{source}: invalid JSON at line {err.lineno}: {err.msg}") from None
    except RecursionError:
        raise DocumentError(f"{source}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as err:  # from the hooks, or Python's own digit limit
        raise DocumentError(f"{source}: invalid JSON: {err}") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {shown(key)} appears twice in one object")
        out[key] = value
    return out


def _checked_int(text: str) -> int:
    count = len(text.lstrip("+-"))
    if count > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {count:,} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def parse_yaml(text: str, source: str) -> object:
    """YAML (safe types only) with duplicated keys and overlong integers refused, naming the
    line."""
    import yaml

    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise DocumentError(f"{source}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise DocumentError(f"{source}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as err:  # a constructor's own (a date out of range, say)
        raise DocumentError(f"{source}: invalid YAML: {shown(str(err), 120)}") from None


_LOADER: type | None = None


def _strict_loader() -> type:
    """yaml.SafeLoader, but a mapping may not give a key twice and an integer has at most
    MAX_INT_DIGITS digits (made once, on first use: yaml is imported lazily)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.constructor import ConstructorError

    class StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
        def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode
                    ):
                        continue
                    key = self.construct_object(key_node)
                    line = key_node.start_mark.line + 1
                    try:
                        first = seen.get(key)
                    except TypeError:  # unhashable: SafeLoader refuses it next
                        continue
                    if first is not None:
                        raise ConstructorError(
                            None,
                            None,
                            f"key {shown(key)} appears twice (lines {first} and {line})",
                            key_node.start_mark,
                        )
                    seen[key] = line
            return super().construct_mapping(node, deep)  # type: ignore[no-any-return]

        def construct_yaml_int(self, node: yaml.Node) -> int:
            text = str(self.construct_scalar(node)).replace("_", "")
            count = len(text.lstrip("+-"))
            if count > MAX_INT_DIGITS:
                raise ConstructorError(
                    None, None, f"an integer of {count:,} digits (at most {MAX_INT_DIGITS})",
                    node.start_mark,
                )  # fmt: skip
            return super().construct_yaml_int(node)  # type: ignore[no-any-return]

    StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
    _LOADER = StrictLoader
    return StrictLoader


def check_bounded(data: object, *, source: str) -> None:
    """Refuse a parsed document past MAX_VALUES values (every alias counted where it is used),
    MAX_DEPTH levels, or with an integer past MAX_INT_DIGITS digits. Walks at most MAX_VALUES
    values, so an alias bomb costs nothing here."""
    # (value, depth, the top-level key it lies under: what a refusal names)
    stack: list[tuple[object, int, object]] = [(data, 0, None)]
    count = 0
    while stack:
        value, depth, top = stack.pop()
        where = f"{source}: " + ("" if top is None else f"key {shown(top, 30)} ")
        count += 1
        if count > MAX_VALUES:
            raise DocumentError(
                f"{where}holds more than {MAX_VALUES:,} values (YAML aliases count each time "
                "they are used); a spec or config is a few keys of numbers and names"
            )
        if depth > MAX_DEPTH:
            raise DocumentError(f"{where}is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
            raise DocumentError(f"{where}is {shown(value)} (at most {MAX_INT_DIGITS})")
        if isinstance(value, dict):
            for k, v in value.items():
                label = k if depth == 0 else top
                stack.extend(((k, depth + 1, label), (v, depth + 1, label)))
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1, top) for v in value)
