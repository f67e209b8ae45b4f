"""The way back to the merchant's site, on every portal page.

Shown on every page when the merchant sets ``CUSTOMER_PORTAL_RETURN_URL``
(checked at start-up). The ``return_url`` of the link that signed this
browser in still wins (checked again against the allowed hosts, which may
have changed since). Without the setting, only a deep link's own pages
lead back (see ``_flows``).
"""

from __future__ import annotations

from typing import Any

from ..state import get_state
from ._base import blueprint
from ._flows import link_return_url

__all__: list[str] = []


@blueprint.context_processor
def _back_link_context() -> dict[str, Any]:
    """``portal_back_url``: where "Back to <merchant>" leads, or ``None``."""
    configured = get_state().config.return_url
    return {"portal_back_url": (link_return_url() or configured) if configured else None}
