"""Typed errors: the CLIs turn `UserError` into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input a user can fix; the message says how."""


class SpecError(UserError):
    """An invalid spec: unknown depth, block, shortcut, widths, sizes, or a malformed spec file."""


class GraphError(UserError):
    """A graph that cannot be built, read or injected as asked."""
