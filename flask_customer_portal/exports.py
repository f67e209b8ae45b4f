"""Files a customer downloads to keep their own records: the billing
history as CSV, every invoice PDF in one ZIP, renewal dates as iCalendar.

Pure functions without Flask, so the rules (amounts as exact decimals, no
spreadsheet formulas, RFC 5545 text) are tested on their own and a host app
can build the same files elsewhere (a nightly email, an admin export).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache

from .formatting import localize_dates, to_timezone
from .money import display_digits, minor_unit_exponent
from .storage import BillingStore, Invoice

__all__ = [
    "CSV_BOM",
    "CalendarEvent",
    "csv_safe",
    "decimal_amount",
    "fold_ics_line",
    "ics_text",
    "invoice_batches",
    "invoice_csv_row",
    "render_calendar",
    "stream_csv",
    "stream_zip",
    "unique_name",
]

# -- reading a long history --------------------------------------------------


def invoice_batches(
    store: BillingStore,
    customer_id: str,
    *,
    batch_size: int,
    with_lines: bool,
    around: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Iterator[Sequence[Invoice]]:
    """The customer's whole billing history, newest first, ``batch_size``
    invoices at a time: memory stays bounded by one batch, and every batch
    costs the store the same (a keyset read, see
    :meth:`~flask_customer_portal.storage.BillingStore.list_invoices_after`).

    Each read runs inside a fresh ``around()`` (a Flask app context, for a
    download that is read after its request ended): nothing stays entered
    while a batch is handed out, so a consumer that stops half-way leaves
    nothing open.
    """
    after: Invoice | None = None
    while True:
        with around():
            batch = store.list_invoices_after(customer_id, after, limit=batch_size, with_lines=with_lines)
        if not batch:
            return
        yield batch
        if len(batch) < batch_size:
            return
        after = batch[-1]


# -- CSV -----------------------------------------------------------------------

#: Lets spreadsheet programs (Excel above all) recognise the file as UTF-8,
#: so names such as "Budi Santoso — Rp" are not shown as mojibake.
CSV_BOM = "\ufeff"

#: A cell starting with one of these is read as a formula by spreadsheet
#: programs (``=HYPERLINK(...)``, ``@SUM(...)``, ``+cmd|...``); tab and
#: carriage return hide such a start from a quick look.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(text: str) -> str:
    """``text`` as a cell that a spreadsheet shows and never evaluates.

    A leading apostrophe is what spreadsheets themselves use to mark a cell
    as text (OWASP's recommendation for CSV injection):

    >>> csv_safe("=HYPERLINK(\\"http://evil.example\\")")
    '\\'=HYPERLINK("http://evil.example")'
    >>> csv_safe("Pro plan")
    'Pro plan'
    """
    if text.startswith(_FORMULA_TRIGGERS):
        return "'" + text
    return text


@lru_cache(maxsize=64)
def _digits(currency: str) -> tuple[int, int]:
    """Stored and shown fraction digits of ``currency`` (asked of Babel once)."""
    return minor_unit_exponent(currency), display_digits(currency)


def decimal_amount(amount: int, currency: str) -> str:
    """Minor units as an exact decimal string, never a float.

    Written with the digits the customer sees on the invoice (``USD`` →
    ``19.00``, ``JPY`` → ``1500``, ``IDR`` in whole rupiah → ``150000``); an
    amount with a fraction the currency does not normally show keeps it
    rather than being rounded (``IDR`` 15000050 → ``150000.50``).

    >>> decimal_amount(1999, "USD"), decimal_amount(15_000_000, "IDR"), decimal_amount(-250, "EUR")
    ('19.99', '150000', '-2.50')
    """
    exponent, digits = _digits(currency)
    if digits >= exponent or amount % 10 ** (exponent - digits) != 0:
        digits = exponent
    value = Decimal(amount).scaleb(-exponent)
    return f"{value:.{digits}f}"


def _iso_date(moment: datetime | None, tz: str | None) -> str:
    return "" if moment is None else to_timezone(moment, tz).date().isoformat()


def invoice_csv_row(
    invoice: Invoice, *, tz: str | None, status_label: str, locale: str | None = None
) -> list[str]:
    """One invoice as the export's columns: number, issued date, description,
    status, currency, subtotal, tax, total, paid date, payment reference,
    then (added later, so at the end) the amount refunded, the amount
    credited to the account, and the numbers of its credit notes.

    Dates are ISO 8601 (``2026-03-14``) in the customer's time zone, the day
    the invoice shows; the description is text for a person, so with a
    ``locale`` its ISO dates are written in that language, as the pages
    show them; text from outside the portal goes through :func:`csv_safe`.
    """
    description = invoice.description if locale is None else localize_dates(invoice.description, locale)
    return [
        csv_safe(invoice.number),
        _iso_date(invoice.issued_at, tz),
        csv_safe(description),
        csv_safe(status_label),
        invoice.currency,
        decimal_amount(invoice.subtotal, invoice.currency),
        decimal_amount(invoice.tax, invoice.currency),
        decimal_amount(invoice.total, invoice.currency),
        _iso_date(invoice.paid_at, tz),
        csv_safe(invoice.payment_reference or ""),
        decimal_amount(invoice.amount_refunded, invoice.currency),
        decimal_amount(invoice.amount_credited - invoice.amount_refunded, invoice.currency),
        csv_safe(" ".join(note.number for note in invoice.credit_notes)),
    ]


def stream_csv(header: Sequence[str], batches: Iterable[Iterable[Sequence[str]]]) -> Iterator[bytes]:
    """UTF-8 (with BOM) CSV, RFC 4180 (``\\r\\n``, quotes where needed), one
    chunk per batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(CSV_BOM)
    writer.writerow([csv_safe(name) for name in header])
    for rows in batches:
        writer.writerows(rows)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    rest = buffer.getvalue()
    if rest:
        yield rest.encode("utf-8")


# -- ZIP -------------------------------------------------------------------------


class _Drain(io.RawIOBase):
    """A write-only, unseekable file that keeps what was written until
    :meth:`take` (:mod:`zipfile` then writes data descriptors and never
    seeks back, so the archive can be sent while it is being made)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # RawIOBase takes a buffer
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


#: ZIP timestamps start in 1980.
_ZIP_EPOCH = datetime(1980, 1, 1, tzinfo=timezone.utc)


def stream_zip(files: Iterable[tuple[str, datetime, bytes]]) -> Iterator[bytes]:
    """A ZIP archive of ``(name, modified, data)`` files, yielded file by
    file: only one file's data is held at a time, whatever the count.

    If making a file fails half-way the archive stops there without its
    central directory, so an unzip tool reports it damaged instead of
    silently offering fewer files.
    """
    sink = _Drain()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, modified, data in files:
            stamp = max(modified, _ZIP_EPOCH)
            info = zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
            archive.writestr(info, data)
            yield sink.take()
    tail = sink.take()
    if tail:
        yield tail


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext`` … if it is in ``taken``
    (which it is added to). Two invoice numbers can make the same safe file
    name (``A/1`` and ``A-1``), and one must not hide the other."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}{dot}{extension}"
    taken.add(candidate)
    return candidate


# -- iCalendar (RFC 5545) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """An all-day event (``DTSTART;VALUE=DATE``): a renewal happens on a
    day in the customer's calendar, not at an instant they care about."""

    uid: str
    """Stable for the same thing happening (subscription + period), so a
    re-imported file updates the event instead of adding a copy."""
    day: date
    summary: str
    description: str = ""
    url: str | None = None


def ics_text(value: str) -> str:
    """A TEXT value escaped as RFC 5545 §3.3.11 says: ``\\`` ``;`` ``,`` and
    line breaks; other control characters are dropped (not allowed)."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = "".join(ch for ch in value if ch == "\n" or ch == "\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F))
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold_ics_line(line: str, limit: int = 75) -> str:
    """``line`` folded into lines of at most ``limit`` octets of UTF-8
    (§3.1), each continuation starting with a space, never splitting a
    character; joined with CRLF, without a final one."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    room = limit
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > room:
            parts.append("".join(current))
            current, size = [], 0
            room = limit - 1  # the leading space of a continuation line counts
        current.append(char)
        size += width
    parts.append("".join(current))
    return "\r\n ".join(parts)


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def render_calendar(events: Iterable[CalendarEvent], *, product_id: str, name: str, stamp: datetime) -> str:
    """A ``VCALENDAR`` (``METHOD:PUBLISH``) with one ``VEVENT`` per event.
    ``stamp`` (aware) is every event's ``DTSTAMP``: when the file was made."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{ics_text(product_id)}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{ics_text(name)}",
    ]
    dtstamp = _utc_stamp(stamp)
    for event in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{ics_text(event.uid)}",
            f"DTSTAMP:{dtstamp}",
            f"DTSTART;VALUE=DATE:{event.day:%Y%m%d}",
            f"DTEND;VALUE=DATE:{event.day + timedelta(days=1):%Y%m%d}",
            f"SUMMARY:{ics_text(event.summary)}",
        ]
        if event.description:
            lines.append(f"DESCRIPTION:{ics_text(event.description)}")
        if event.url:
            lines.append(f"URL;VALUE=URI:{event.url}")
        lines += ["TRANSP:TRANSPARENT", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(fold_ics_line(line) + "\r\n" for line in lines)
