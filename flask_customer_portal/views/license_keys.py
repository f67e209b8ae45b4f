"""Licence keys: every key of the customer's purchases, ready to copy."""

from __future__ import annotations

from typing import Any

from flask import render_template

from ..state import get_state
from ._base import blueprint, current_customer_or_401, customer_required

__all__ = ["license_keys", "mask_key"]

#: What stands for the hidden middle of a key.
MASK = "••••"


def mask_key(key: str) -> str:
    """``ACME-SYNC-7K3Q-M9VX-2HPD-4RTA`` → ``ACME-••••-4RTA``.

    Shows the first group (or the first four characters of a key without
    groups) and the last four, never more than a third of the key, so the
    key can be recognised on screen but not read off it.
    """
    key = key.strip()
    if len(key) < 12:
        return MASK + key[-2:] if len(key) >= 6 else MASK
    tail = key[-4:]
    head, separator, _rest = key.partition("-")
    if separator and 0 < len(head) <= len(key) // 3:
        return f"{head}-{MASK}-{tail}"
    return f"{key[:4]}{MASK}{tail}"


@blueprint.route("/license-keys")
@customer_required
def license_keys() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    # The store is scoped by customer; checking again costs nothing and
    # keeps a faulty custom store from showing someone else's key.
    keys = [key for key in state.storage.list_license_keys(customer.id) if key.customer_id == customer.id]
    return render_template("customer_portal/license_keys.html", license_keys=keys, mask_key=mask_key)
