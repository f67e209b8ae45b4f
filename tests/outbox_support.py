"""Reading the mail outbox in tests."""

from __future__ import annotations

from flask import Flask

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import MailStatus, OutboxMail


def receipt_rows(app: Flask) -> list[OutboxMail]:
    """Every receipt row in the outbox of a composite store's local store,
    sent or not, each once."""
    with app.app_context():
        state = get_state(app)
        # Delivered after commit in the background: let it finish, so that a
        # row is not read as pending and then again as sent.
        state.wait_for_background_tasks()
        local = state.storage.local  # type: ignore[attr-defined]
        rows = {row.id: row for status in MailStatus for row in local.list_mail(status=status, limit=500)}
    return [row for row in rows.values() if row.kind == "receipt"]
