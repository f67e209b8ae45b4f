"""Signals the portal sends, so the merchant's code can react.

Every signal is sent with the Flask app as sender
(``current_app._get_current_object()``) and keyword arguments as listed.
Connect with ``session_created.connect_via(app)`` to listen to one app only.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = [
    "link_used",
    "login_link_requested",
    "session_created",
    "signed_in",
    "signed_out",
]

_signals = Namespace()

#: A dynamic link was made with :meth:`CustomerPortal.create_session`.
#: Keyword arguments: ``customer`` (:class:`~flask_customer_portal.Customer`),
#: ``session`` (:class:`~flask_customer_portal.PortalSession`).
session_created = _signals.signal("session-created")

#: A one-time link was used up. Keyword arguments: ``customer``, ``purpose``
#: (:class:`~flask_customer_portal.storage.LinkPurpose`).
link_used = _signals.signal("link-used")

#: Someone asked for a login link on the static page and the address is a
#: customer's. Keyword arguments: ``customer``. Not sent for unknown
#: addresses or over the rate limit.
login_link_requested = _signals.signal("login-link-requested")

#: A customer signed in. Keyword arguments: ``customer``, ``method``
#: (``"session_link"``, ``"login_link"`` or ``"host_user"``).
signed_in = _signals.signal("signed-in")

#: A customer signed out. Keyword arguments: ``customer``.
signed_out = _signals.signal("signed-out")
