"""`python -m relay` is the `relay` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
