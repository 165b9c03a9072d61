"""graphgen's typed errors; the CLIs turn them (UserErrors) into one line and exit code 2."""

from resnet_common.errors import UserError


class SpecError(UserError):
    """An invalid spec: unknown depth, block, shortcut, widths, sizes, or a malformed spec file."""


class GraphError(UserError):
    """A graph that cannot be built, read or injected as asked."""
