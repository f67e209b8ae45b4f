"""Every page of the portal marks where it is in the navigation: its own
entry, or the section it belongs to, so a page reached by a form (a
refused promotion code, a declined payment shown again) keeps its place."""

from __future__ import annotations

from flask import Flask

from flask_customer_portal.views._base import _NAV, _SECTION_OF

#: Endpoints that are no page of a section: sign-in and its links, files,
#: and actions that only redirect.
OUTSIDE_THE_NAVIGATION = frozenset(
    {
        "static",
        "login",
        "login_link",
        "session_link",
        "logout",
        "set_language",
        "invoice_pdf",
        "credit_note_pdf",
        "export_invoices_csv",
        "export_invoices_zip",
        "export_renewals_ics",
        "sign_out_session",
        "sign_out_everywhere",
    }
)


def test_every_page_belongs_to_a_section_of_the_navigation(app: Flask) -> None:
    endpoints = {
        rule.endpoint.split(".", 1)[1]
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("portal.")
    }
    entries = {page for page, _ in _NAV}
    assert entries <= endpoints
    assert set(_SECTION_OF) <= endpoints, set(_SECTION_OF) - endpoints
    assert set(_SECTION_OF.values()) <= entries
    unplaced = endpoints - entries - set(_SECTION_OF) - OUTSIDE_THE_NAVIGATION
    assert not unplaced, f"pages without a section of the navigation: {sorted(unplaced)}"
