"""The portal's forms (Flask-WTF), one module per area: :mod:`.common` (the
base form, sign-in and confirmation buttons), :mod:`.billing_details`,
:mod:`.cancel_flow`, :mod:`.payment` and :mod:`.profile`. CSRF is always on
for them, whatever ``WTF_CSRF_ENABLED`` says for the host's own forms."""

from __future__ import annotations

from .common import ConfirmForm, LoginForm, OpenLinkForm, PortalForm, normalize_email

__all__ = ["ConfirmForm", "LoginForm", "OpenLinkForm", "PortalForm", "normalize_email"]
