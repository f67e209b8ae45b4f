"""payment_methods pages."""

from __future__ import annotations
