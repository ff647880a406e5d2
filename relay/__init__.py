"""pushwoosh-relay: receive Pushwoosh webhook events, route them, deliver them durably."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
