"""``flask consent scan`` (in progress)."""

from __future__ import annotations
