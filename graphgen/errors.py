"""graphgen's typed errors; the CLIs turn them (UserErrors) into one line and exit code 2."""

from resnet_common.errors import UserError


class SpecError(UserError):
    """An invalid spec: unknown depth, block, shortcut, widths, sizes, or a malformed spec file."""


class GraphError(UserError):
    """A graph that cannot be built, read or injected as asked."""


class StridePlacementError(GraphError):
    """Where a bottleneck strides (its first 1x1 or its 3x3) is unknown or disagrees: weights
    alone cannot show it, since both placements have the same names and shapes."""
