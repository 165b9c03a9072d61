"""`python -m runtimes` is `bench-runtimes` (for environments where the console script is absent)."""

from runtimes.cli import main

raise SystemExit(main())
