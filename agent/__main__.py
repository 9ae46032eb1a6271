"""`python -m agent ...`: the same as `gamenode agent ...`."""

from __future__ import annotations

from agent.cli import main

raise SystemExit(main())
