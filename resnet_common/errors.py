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
