"""license_keys pages."""

from __future__ import annotations
