"""Downloads (invoice ZIP and CSV, renewals calendar) and a licence key's
devices in a real browser on a phone, with axe-core checks."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from icalendar import Calendar
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _download(page: Any, link: Any) -> tuple[str, bytes]:
    """Click ``link`` and return the file the browser saved."""
    with page.expect_download() as info:
        link.click()
    download = info.value
    path = download.path()
    assert path is not None
    return download.suggested_filename, Path(path).read_bytes()


def test_ava_downloads_her_invoices_on_a_phone(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    phone.goto("/portal/invoices")
    exports = phone.get_by_role("region", name="Download all invoices")
    expect(exports).to_be_visible()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    name, body = _download(phone, exports.get_by_role("link", name="Billing history as a spreadsheet (CSV)"))
    assert re.fullmatch(r"invoices-\d{4}-\d{2}-\d{2}\.csv", name)
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert rows[0][0] == "Invoice number"
    assert len(rows) == 1 + 15

    name, body = _download(phone, exports.get_by_role("link", name="All invoices as PDF files (ZIP)"))
    assert re.fullmatch(r"invoices-\d{4}-\d{2}-\d{2}\.zip", name)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert len(archive.namelist()) == 15
    assert all(archive.read(n).startswith(b"%PDF-") for n in archive.namelist())
    # Downloading left the page where it was.
    assert phone.url.endswith("/portal/invoices")


def test_ava_adds_her_renewals_to_a_calendar(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    phone.goto("/portal/subscriptions")
    link = phone.get_by_role("link", name="Add renewal dates to your calendar (.ics)")
    expect(link).to_be_visible()
    axe_check(phone)
    name, body = _download(phone, link)
    assert name == "renewals.ics"
    (event,) = Calendar.from_ical(body).walk("VEVENT")
    assert str(event["SUMMARY"]) == "Acme Sync renews"
    assert str(event["URL"]).startswith(live_server.url + "/portal/subscriptions/")


def test_ava_reads_a_keys_devices_on_a_phone(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    phone.goto("/portal/license-keys")
    with phone.expect_navigation():
        phone.get_by_role("link", name="Manage activated devices").first.click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Licence key for Acme Sync")
    devices = phone.get_by_role("region", name="Activated devices", exact=True)
    expect(devices.get_by_role("listitem")).to_have_count(2)
    expect(devices.locator("summary", has_text="Deactivate Ava's MacBook Pro")).to_be_visible()
    expect(phone.get_by_role("region", name="Deactivated devices")).to_contain_text("Old ThinkPad")
    expect(phone.get_by_text("ACME-SYNC-7K3Q-M9VX-2HPD-4RTA")).to_have_count(0)
    assert_no_horizontal_scroll(phone)
    axe_check(phone)


def test_ava_deactivates_a_device_on_a_phone(own_phone: Any, own_live_server: Any, axe_check: Any) -> None:
    page = own_phone
    open_portal(page, own_live_server.magic_link("cus_demo_ava"))
    page.goto("/portal/license-keys/lk_demo_ava_sync")
    expect(page.get_by_text("2 of 5")).to_be_visible()
    # Deactivating asks first: the first press only shows what it will do.
    page.locator("summary", has_text="Deactivate Ava's iPhone").click()
    expect(page.get_by_text("Deactivate Ava's iPhone? The app on it stops working")).to_be_visible()
    expect(page.get_by_text("2 of 5")).to_be_visible()
    assert_no_horizontal_scroll(page)
    axe_check(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Yes, deactivate Ava's iPhone").click()
    expect(page.get_by_role("status")).to_contain_text("Ava's iPhone is deactivated")
    expect(page.get_by_text("1 of 5")).to_be_visible()
    devices = page.get_by_role("region", name="Activated devices", exact=True)
    expect(devices.get_by_role("listitem")).to_have_count(1)
    expect(page.get_by_role("region", name="Deactivated devices")).to_contain_text("Ava's iPhone")
    assert_no_horizontal_scroll(page)
    axe_check(page)

    # The same button pressed again from a stale tab: a clear word, no second decrement.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    stale = page.request.post(
        "/portal/license-keys/lk_demo_ava_sync/instances/lki_demo_ava_iphone/deactivate",
        form={"csrf_token": token},
        max_redirects=0,
    )
    assert stale.status == 303
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("already deactivated. Nothing changed.")
    expect(page.get_by_text("1 of 5")).to_be_visible()


def test_an_export_over_its_limit_shows_why(configured_phone: Any, axe_check: Any) -> None:
    """A refused download opens a page that says why (a link with a
    ``download`` attribute would only show a failed download)."""
    with configured_phone(CUSTOMER_PORTAL_EXPORT_RATE_LIMIT="1 per hour") as (phone, server):
        open_portal(phone, server.magic_link("cus_demo_ava"))
        phone.goto("/portal/invoices")
        link = phone.get_by_role("link", name="Billing history as a spreadsheet (CSV)")
        _download(phone, link)
        assert phone.url.endswith("/portal/invoices")
        with phone.expect_navigation():
            link.click()
        expect(phone.get_by_role("heading", level=1)).to_have_text("Too many downloads")
        expect(phone.get_by_text("You have downloaded this file too many times recently.")).to_be_visible()
        assert_no_horizontal_scroll(phone)
        axe_check(phone)
        with phone.expect_navigation():
            phone.get_by_role("link", name="Back").click()
        assert phone.url.endswith("/portal/invoices")
