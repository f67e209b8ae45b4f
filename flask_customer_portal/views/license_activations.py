"""One licence key and its activations: the devices using it, each with a
button that deactivates it and so frees its seat."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, redirect, render_template, url_for

from .. import signals
from ..clock import utcnow
from ..forms import ConfirmForm
from ..i18n import gettext as _
from ..state import PortalState, get_state
from ..storage import AuditEvent, Customer, LicenseKey, StateConflict
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id
from .license_keys import mask_key

__all__ = ["deactivate_license_instance", "license_key"]


def _own_key(state: PortalState, customer: Customer, license_key_id: str) -> LicenseKey:
    """The customer's licence key; 404 for anything else."""
    if not plausible_id(license_key_id):
        abort(404)
    key = state.storage.get_license_key(customer.id, license_key_id)
    # Checked again: a faulty custom store must not show another's key.
    if key is None or key.customer_id != customer.id:
        abort(404)
    return key


@blueprint.route("/license-keys/<license_key_id>")
@customer_required
def license_key(license_key_id: str) -> Any:
    state = get_state()
    customer = current_customer_or_401()
    key = _own_key(state, customer, license_key_id)
    instances = [
        instance
        for instance in state.storage.list_license_key_instances(customer.id, key.id)
        if instance.customer_id == customer.id
    ]
    return render_template(
        "customer_portal/license_key.html",
        license_key=key,
        masked_key=mask_key(key.key),
        active_instances=[instance for instance in instances if instance.is_active],
        past_instances=[instance for instance in instances if not instance.is_active],
    )


@blueprint.route(
    "/license-keys/<license_key_id>/instances/<instance_id>/deactivate",
    methods=["POST"],
)
@customer_required
def deactivate_license_instance(license_key_id: str, instance_id: str) -> Any:
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    if not plausible_id(instance_id):
        abort(404)
    key = _own_key(state, customer, license_key_id)
    back = redirect(url_for(".license_key", license_key_id=key.id), code=303)
    now = utcnow()
    try:
        instance = state.storage.deactivate_license_key_instance(
            customer.id,
            key.id,
            instance_id,
            now=now,
            event=AuditEvent(
                customer_id=customer.id,
                action="license_key.instance_deactivated",
                occurred_at=now,
                subject_id=instance_id,
                details={"license_key_id": key.id},
            ),
        )
    except StateConflict:
        # A second click, another tab, or the device was already removed:
        # nothing changed and the count was not taken down again.
        notify(_("That device was already deactivated. Nothing changed."))
        return back
    if instance is None:
        abort(404)
    saved = state.storage.get_license_key(customer.id, key.id) or key
    signals.license_key_instance_deactivated.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        license_key=saved,
        instance=instance,
    )
    notify(
        _(
            "%(name)s is deactivated. The %(product)s key can be activated on another device.",
            name=instance.name,
            product=saved.product_name,
        )
    )
    return back
