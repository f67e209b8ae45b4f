"""Amounts, dates and billing periods as customers read them (en and id)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel import Locale

from flask_customer_portal.billing.periods import add_interval, add_months
from flask_customer_portal.formatting import format_date, format_datetime, machine_datetime, to_timezone
from flask_customer_portal.money import Money, display_digits, format_money, minor_unit_exponent

UTC = timezone.utc

# -- money -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "en", "id_"),
    [
        (Money(1999, "USD"), "$19.99", "US$19,99"),
        (Money(5, "USD"), "$0.05", "US$0,05"),
        (Money(0, "USD"), "$0.00", "US$0,00"),
        (Money(100_000_000, "USD"), "$1,000,000.00", "US$1.000.000,00"),
        # IDR counts sen (2 minor digits) like ISO and the providers, but
        # nobody shows them: whole rupiah in every locale.
        (Money(15_000_000, "IDR"), "IDR150,000", "Rp150.000"),
        (Money(129_900_000, "IDR"), "IDR1,299,000", "Rp1.299.000"),
        (Money(0, "IDR"), "IDR0", "Rp0"),
        # JPY has no minor unit at all: 1999 is ¥1,999.
        (Money(1999, "JPY"), "¥1,999", "JP¥1.999"),
        (Money(123_456, "EUR"), "€1,234.56", "€1.234,56"),
    ],
    ids=str,
)
def test_format_money(money: Money, en: str, id_: str) -> None:
    assert format_money(money, "en") == en
    assert format_money(money, "id") == id_


@pytest.mark.parametrize(
    ("money", "en", "id_"),
    [
        (Money(-1999, "USD"), "-$19.99", "-US$19,99"),
        (Money(-15_000_000, "IDR"), "-IDR150,000", "-Rp150.000"),
        (Money(-1999, "JPY"), "-¥1,999", "-JP¥1.999"),
        (Money(-123_456, "EUR"), "-€1,234.56", "-€1.234,56"),
    ],
    ids=str,
)
def test_format_negative_money(money: Money, en: str, id_: str) -> None:
    # Refunds and credits: a minus sign, never brackets or a lost sign.
    assert format_money(money, "en") == en
    assert format_money(money, "id") == id_


def test_idr_has_no_decimals_in_any_locale() -> None:
    amount = Money(15_000_000, "IDR")
    assert minor_unit_exponent("IDR") == 2
    assert display_digits("IDR") == 0
    for locale in ("en", "id", "en_US", "id_ID", "de", "nl"):
        text = format_money(amount, locale)
        assert re.sub(r"\D", "", text) == "150000", text
    # A locale whose pattern puts the symbol after the number keeps it there.
    assert format_money(amount, "de") == "150.000\xa0IDR"


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("USD", 2),
        ("IDR", 2),
        ("HUF", 2),
        ("TWD", 2),
        ("COP", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("KWD", 3),
        ("IQD", 3),
        ("CLF", 4),
        ("XDR", 2),
        ("QQQ", 2),
    ],
)
def test_stored_minor_digits_are_iso_4217(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("cldr_idr_digits", [2, 0], ids=["babel-2.18", "babel-2.19"])
def test_amounts_keep_their_meaning_whatever_cldr_says(
    monkeypatch: pytest.MonkeyPatch, cldr_idr_digits: int
) -> None:
    """CLDR's digits are display practice and change between Babel releases
    (IDR and HUF went from 2 to 0): neither what a stored amount means nor
    how it is shown may change with them."""
    import babel.numbers

    from flask_customer_portal import money

    real = babel.numbers.get_currency_precision

    def precision(currency: str) -> int:
        return cldr_idr_digits if currency in ("IDR", "HUF") else int(real(currency))

    monkeypatch.setattr(money, "get_currency_precision", precision)
    monkeypatch.setattr(babel.numbers, "get_currency_precision", precision)
    for cached in (money.minor_unit_exponent, money.display_digits, money._formatted):
        cached.cache_clear()
    try:
        assert Money(15000000, "IDR").decimal == Decimal("150000")
        assert format_money(Money(15000000, "IDR"), "id") == "Rp150.000"
        assert format_money(Money(15000050, "IDR"), "id") == "Rp150.000"
        assert format_money(Money(1999, "USD"), "en") == "$19.99"
        assert display_digits("IDR") == 0
    finally:
        for cached in (money.minor_unit_exponent, money.display_digits, money._formatted):
            cached.cache_clear()


def test_format_money_accepts_a_locale_object() -> None:
    assert format_money(Money(15_000_000, "IDR"), Locale.parse("id_ID")) == "Rp150.000"
    assert format_money(Money(1999, "USD"), Locale("en", "US")) == "$19.99"


def test_huge_amounts_are_exact() -> None:
    # Past 2**53 a float can no longer hold every integer; Money never
    # goes through one.
    big = 2**53 + 1
    assert Money(big, "USD").decimal == Decimal("90071992547409.93")
    assert format_money(Money(big, "USD"), "en") == "$90,071,992,547,409.93"
    assert format_money(Money(big, "USD"), "id") == "US$90.071.992.547.409,93"
    huge = 10**20 + 7
    assert format_money(Money(huge, "USD"), "en") == "$1,000,000,000,000,000,000.07"
    assert format_money(Money(10**20, "IDR"), "id") == "Rp1.000.000.000.000.000.000"
    assert format_money(Money(big, "JPY"), "en") == "¥9,007,199,254,740,993"
    assert format_money(Money(-big, "EUR"), "id") == "-€90.071.992.547.409,93"


def test_money_decimal() -> None:
    assert Money(1999, "USD").decimal == Decimal("19.99")
    assert Money(1999, "JPY").decimal == Decimal(1999)
    assert Money(15_000_000, "IDR").decimal == Decimal(150_000)
    assert Money(-5, "EUR").decimal == Decimal("-0.05")


def test_money_adds_only_the_same_currency() -> None:
    assert Money(1999, "USD") + Money(1, "USD") == Money(2000, "USD")
    with pytest.raises(ValueError, match="cannot add"):
        Money(1999, "USD") + Money(1999, "EUR")


@pytest.mark.parametrize("amount", [19.99, 1999.0, float("nan"), True, False, Decimal("19.99"), "1999", None])
def test_money_rejects_amounts_that_are_not_int(amount: object) -> None:
    with pytest.raises(TypeError, match="int in minor units"):
        Money(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["usd", "US", "USDT", "", " USD", "US1", "€"])
def test_money_rejects_a_bad_currency_code(currency: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(100, currency)


def test_money_is_immutable() -> None:
    money = Money(100, "USD")
    with pytest.raises(AttributeError):
        money.amount = 200  # type: ignore[misc]


# -- dates -----------------------------------------------------------------------

# 20:00 UTC on 21 November is already 03:00 on 22 November in Jakarta, and
# still noon on the 21st in Los Angeles.
MOMENT = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "tz", "expected"),
    [
        ("id", "Asia/Jakarta", "22 November 2026"),
        ("en", "Asia/Jakarta", "November 22, 2026"),
        ("id", "America/Los_Angeles", "21 November 2026"),
        ("en", "America/Los_Angeles", "November 21, 2026"),
        ("id", None, "21 November 2026"),
        ("en", "UTC", "November 21, 2026"),
    ],
)
def test_format_date_in_the_customers_zone_and_language(locale: str, tz: str | None, expected: str) -> None:
    assert format_date(MOMENT, locale, tz) == expected


def test_format_date_months_in_indonesian() -> None:
    assert format_date(datetime(2026, 3, 5, 23, 30, tzinfo=UTC), "id", "Asia/Jakarta") == "6 Maret 2026"
    assert format_date(datetime(2026, 8, 17, 3, 0, tzinfo=UTC), "id", "Asia/Jakarta") == "17 Agustus 2026"
    assert format_date(datetime(2026, 12, 31, 17, 0, tzinfo=UTC), "id", "Asia/Jakarta") == "1 Januari 2027"


def test_format_date_other_formats() -> None:
    assert format_date(MOMENT, "id", "Asia/Jakarta", format="full") == "Minggu, 22 November 2026"
    assert format_date(MOMENT, "en", "Asia/Jakarta", format="full") == "Sunday, November 22, 2026"
    assert format_date(MOMENT, "id", "Asia/Jakarta", format="short") == "22/11/26"


def test_an_aware_moment_in_another_zone_is_converted() -> None:
    # The same instant given with a -05:00 offset.
    same = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    assert format_date(same, "id", "Asia/Jakarta") == "22 November 2026"
    assert to_timezone(same, "Asia/Jakarta") == MOMENT
    assert to_timezone(same, "Asia/Jakarta").utcoffset() == timedelta(hours=7)


def test_format_datetime_in_the_customers_zone_and_language() -> None:
    jakarta = format_datetime(MOMENT, "id", "Asia/Jakarta")
    assert "22 Nov 2026" in jakarta and "03.00" in jakarta, jakarta
    los_angeles = format_datetime(MOMENT, "en", "America/Los_Angeles")
    assert "Nov 21, 2026" in los_angeles and "12:00" in los_angeles and "PM" in los_angeles, los_angeles


def test_format_datetime_follows_daylight_saving_time() -> None:
    # Los Angeles moves to PDT (UTC-7) on 8 March 2026.
    before = format_datetime(datetime(2026, 3, 8, 9, 30, tzinfo=UTC), "en", "America/Los_Angeles")
    after = format_datetime(datetime(2026, 3, 8, 10, 30, tzinfo=UTC), "en", "America/Los_Angeles")
    assert "1:30" in before, before
    assert "3:30" in after, after


@pytest.mark.parametrize("func", [format_date, format_datetime])
def test_naive_datetimes_are_refused(func: object) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        func(datetime(2026, 11, 21, 20, 0), "id", "Asia/Jakarta")  # type: ignore[operator]


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        format_date(MOMENT, "en", "Mars/Olympus_Mons")


# -- billing periods -------------------------------------------------------------


def _utc(year: int, month: int, day: int, hour: int = 9, minute: int = 15) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (_utc(2026, 1, 31), 1, _utc(2026, 2, 28)),
        (_utc(2028, 1, 31), 1, _utc(2028, 2, 29)),  # leap year
        (_utc(2026, 1, 29), 1, _utc(2026, 2, 28)),
        (_utc(2026, 1, 31), 2, _utc(2026, 3, 31)),  # from the start, not chained
        (_utc(2026, 3, 31), 1, _utc(2026, 4, 30)),
        (_utc(2026, 3, 31), -1, _utc(2026, 2, 28)),
        (_utc(2028, 3, 31), -1, _utc(2028, 2, 29)),
        (_utc(2026, 5, 15), -5, _utc(2025, 12, 15)),
        (_utc(2026, 12, 15), 1, _utc(2027, 1, 15)),  # year wrap
        (_utc(2026, 12, 31), 2, _utc(2027, 2, 28)),
        (_utc(2026, 1, 15), -1, _utc(2025, 12, 15)),
        (_utc(2026, 11, 30), 15, _utc(2028, 2, 29)),
        (_utc(2026, 6, 10), 0, _utc(2026, 6, 10)),
        (_utc(2026, 6, 10), -24, _utc(2024, 6, 10)),
    ],
)
def test_add_months_clamps_to_the_end_of_the_month(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


def test_add_months_keeps_the_time_and_zone() -> None:
    start = datetime(2026, 1, 31, 23, 45, 12, 345, tzinfo=ZoneInfo("Asia/Jakarta"))
    result = add_months(start, 1)
    assert result == datetime(2026, 2, 28, 23, 45, 12, 345, tzinfo=ZoneInfo("Asia/Jakarta"))
    assert result.tzinfo == start.tzinfo


@pytest.mark.parametrize(
    ("interval", "count", "expected"),
    [
        ("day", 1, _utc(2028, 3, 1)),
        ("day", 30, _utc(2028, 3, 30)),
        ("week", 1, _utc(2028, 3, 7)),
        ("week", 2, _utc(2028, 3, 14)),
        ("month", 1, _utc(2028, 3, 29)),
        ("month", 12, _utc(2029, 2, 28)),
        ("year", 1, _utc(2029, 2, 28)),  # 29 February, then no 29th
        ("year", 4, _utc(2032, 2, 29)),
        ("day", -1, _utc(2028, 2, 28)),
    ],
)
def test_add_interval(interval: str, count: int, expected: datetime) -> None:
    assert add_interval(_utc(2028, 2, 29), interval, count) == expected


def test_add_interval_counts_one_by_default() -> None:
    start = _utc(2026, 1, 31)
    assert add_interval(start, "month") == _utc(2026, 2, 28)
    assert add_interval(start, "year") == _utc(2027, 1, 31)
    assert add_interval(start, "week") == _utc(2026, 2, 7)
    assert add_interval(start, "day") == _utc(2026, 2, 1)


@pytest.mark.parametrize("interval", ["fortnight", "months", "Month", "", "quarter"])
def test_add_interval_rejects_an_unknown_interval(interval: str) -> None:
    with pytest.raises(ValueError, match="unknown billing interval"):
        add_interval(_utc(2026, 1, 31), interval)


def test_machine_datetime_is_utc_to_the_second() -> None:
    # HTML's <time datetime> allows at most three digits of a second's fraction.
    jakarta = datetime(2026, 3, 6, 6, 30, 7, 999_999, tzinfo=ZoneInfo("Asia/Jakarta"))
    assert machine_datetime(jakarta) == "2026-03-05T23:30:07Z"
    assert machine_datetime(datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc)) == "2026-03-05T23:30:00Z"
    with pytest.raises(ValueError, match="naive datetime"):
        machine_datetime(datetime(2026, 3, 5, 23, 30))
