"""Server-side enforcement: gated scripts and embeds, known trackers, cookies, Consent Mode."""

from __future__ import annotations
