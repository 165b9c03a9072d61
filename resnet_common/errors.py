"""The errors every command line turns into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input a user can fix; the message says how."""


class FileWriteError(UserError):
    """A file could not be written (permissions, a read-only file system, a missing folder)."""


class DiskFullError(FileWriteError):
    """No space left on the device (or over quota) while writing a file; what was whole stays."""


class NotRegularFileError(FileWriteError):
    """The target exists and is not a regular file (a device, a folder, a socket, a link)."""


class LockedError(UserError):
    """Another live process holds the exclusive lock on an output (one writer per output)."""


class TooLargeError(UserError):
    """A size past the sane limits (parameters, MACs, activations, memory); the message names the
    number, the limit and how to raise it."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def typed_line(err: BaseException) -> str:
    """`Type: first line`, for errors whose type is part of the message (KeyError: 'x')."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


SHOWN_CHARS = 60  # how much of a value a message shows


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value`'s repr for a message, capped: a value from a file may be a YAML alias bomb (a
    billion-element list in 2 KB) or a 100 MB string, whose full repr would exhaust memory. The
    repr is built with reprlib's per-level caps, so its cost is bounded too."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = limit, limit, 24
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {digits(value):,} digits"
    if isinstance(value, str) and len(value) > limit:
        return f"{value[: limit - 4]!r}... ({len(value):,} characters)"
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def digits(value: int) -> int:
    """Decimal digits of |value|, without converting it to text (past 4300 digits Python's
    str() refuses)."""
    import math

    n = abs(value)
    if n < 10:
        return 1
    guess = int(n.bit_length() * math.log10(2))
    return guess + int(n >= 10**guess)
