"""Local stand-ins for the CRM and analytics APIs the recipes in ``examples/recipes/`` feed.

:mod:`.standin` is the server (limits, rate windows, recording); :mod:`.catalog` says
what each vendor documents. A test starts ``StandIn(catalog.braze("key"))`` and points
the recipe's base URL at ``stand_in.url``.
"""

from __future__ import annotations

from .standin import Endpoint, Limits, Rejected, StandIn, Window

__all__ = ["Endpoint", "Limits", "Rejected", "StandIn", "Window"]
