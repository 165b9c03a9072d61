"""What every package of the suite shares and none owns: typed user errors, atomic file writes
and the command-line conventions (one-line errors, exit codes, list and integer parsers).

It imports nothing from graphgen, runtimes, train or reports, so each of them can use it.
"""
