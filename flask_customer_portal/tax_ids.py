"""Tax IDs and addresses on invoices: checked with python-stdnum, shown as
people write them.

Nothing here needs Flask: the forms translate :class:`InvalidTaxId` into a
message, and the PDF renderer uses :func:`bill_to_lines` as the pages do.

Schemes (:class:`~flask_customer_portal.storage.TaxIdScheme`):

* ``eu_vat``: a VAT number of an EU member state (``stdnum.eu.vat``). A
  number typed without its country prefix gets the prefix of the billing
  country when that country is a member state (Greece's is ``EL``).
* ``id_npwp``: Indonesia's NPWP (``stdnum.id.npwp``), 15 digits or the 16
  digits used since 2024 (a NIK, or the old number after a ``0``).
* ``gb_vat``: a United Kingdom VAT number (``stdnum.gb.vat``), kept with its
  ``GB`` prefix.
* ``au_abn``: an Australian Business Number (``stdnum.au.abn``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

from babel import Locale
from stdnum.au import abn as au_abn
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.gb import vat as gb_vat
from stdnum.id import npwp as id_npwp

from .storage import BillingDetails, TaxIdScheme

__all__ = [
    "EU_COUNTRIES",
    "SCHEME_EXAMPLES",
    "SCHEME_SHORT_NAMES",
    "InvalidTaxId",
    "TaxIdProblem",
    "bill_to_lines",
    "country_codes",
    "country_name",
    "format_tax_id",
    "scheme_for_country",
    "validate_tax_id",
]


class TaxIdProblem(str, enum.Enum):
    """Why a tax ID was refused, for the message next to the field."""

    #: Wrong characters or length: not a number of this kind at all.
    FORMAT = "format"
    #: The right shape, but the check digits do not match: a typing mistake.
    CHECKSUM = "checksum"

    def __str__(self) -> str:
        return self.value


class InvalidTaxId(ValueError):
    """The number is not a valid tax ID of the scheme."""

    def __init__(self, scheme: TaxIdScheme, problem: TaxIdProblem) -> None:
        super().__init__(f"not a valid {scheme.value} number ({problem.value})")
        self.scheme = scheme
        self.problem = problem


#: ISO 3166-1 codes of the EU member states.
EU_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})  # fmt: skip

#: The country prefix of a member state's VAT numbers, where it is not the ISO code.
_VAT_PREFIXES = MappingProxyType({"GR": "EL"})

#: What each kind of number is called on an invoice, in any language.
SCHEME_SHORT_NAMES: Mapping[TaxIdScheme, str] = MappingProxyType(
    {
        TaxIdScheme.EU_VAT: "VAT",
        TaxIdScheme.ID_NPWP: "NPWP",
        TaxIdScheme.GB_VAT: "VAT",
        TaxIdScheme.AU_ABN: "ABN",
    }
)

#: A valid number of each scheme, written as people write it (for hints).
SCHEME_EXAMPLES: Mapping[TaxIdScheme, str] = MappingProxyType(
    {
        TaxIdScheme.EU_VAT: "DE136695976",
        TaxIdScheme.ID_NPWP: "01.300.066.6-091.000",
        TaxIdScheme.GB_VAT: "GB 980 7806 84",
        TaxIdScheme.AU_ABN: "51 824 753 556",
    }
)

_COUNTRY_SCHEMES = MappingProxyType(
    {
        **dict.fromkeys(EU_COUNTRIES, TaxIdScheme.EU_VAT),
        "ID": TaxIdScheme.ID_NPWP,
        "GB": TaxIdScheme.GB_VAT,
        "AU": TaxIdScheme.AU_ABN,
    }
)

#: Two-letter CLDR territories that are not ISO 3166-1 countries (and the
#: placeholders a form should never offer).
_NOT_COUNTRIES = frozenset({
    "AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "ZZ",
})  # fmt: skip

#: Countries that write the postal code before the city ("10115 Berlin").
_POSTAL_CODE_FIRST = frozenset({
    "AT", "BE", "BG", "CH", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IS", "IT",
    "LI", "LT", "LU", "LV", "MC", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
})  # fmt: skip

_MAX_INPUT = 64


def scheme_for_country(country: str | None) -> TaxIdScheme | None:
    """The usual business tax ID of ``country`` (ISO code), if there is one here."""
    return None if not country else _COUNTRY_SCHEMES.get(country.upper())


def validate_tax_id(scheme: TaxIdScheme, number: str, *, country: str | None = None) -> str:
    """``number`` in its compact form (digits and prefix, no separators),
    checked against ``scheme``. ``country`` is the billing country (ISO
    code); it supplies the prefix of an EU VAT number typed without one.
    Raises :class:`InvalidTaxId`."""
    scheme = TaxIdScheme(scheme)
    raw = number.strip()
    if not raw or len(raw) > _MAX_INPUT:
        raise InvalidTaxId(scheme, TaxIdProblem.FORMAT)
    try:
        if scheme is TaxIdScheme.EU_VAT:
            compact = "".join(raw.split()).upper()
            if compact[:1].isdigit() and country and country.upper() in EU_COUNTRIES:
                compact = _VAT_PREFIXES.get(country.upper(), country.upper()) + compact
            return str(eu_vat.validate(compact))
        if scheme is TaxIdScheme.ID_NPWP:
            return str(id_npwp.validate(raw))
        if scheme is TaxIdScheme.GB_VAT:
            return "GB" + str(gb_vat.validate(raw))
        if scheme is TaxIdScheme.AU_ABN:
            return str(au_abn.validate(raw))
    except InvalidChecksum:
        raise InvalidTaxId(scheme, TaxIdProblem.CHECKSUM) from None
    except (InvalidFormat, InvalidLength, InvalidComponent, ValidationError):
        raise InvalidTaxId(scheme, TaxIdProblem.FORMAT) from None
    raise ValueError(f"unknown tax ID scheme {scheme!r}")  # pragma: no cover - the enum has no other members


def format_tax_id(scheme: TaxIdScheme, number: str) -> str:
    """A stored (compact) number as people read it: ``01.300.066.6-091.000``
    for a 15-digit NPWP, ``0013 0006 6609 1000`` for a 16-digit one,
    ``GB 980 7806 84``, ``51 824 753 556``; EU VAT numbers stay compact, as
    VIES prints them. A number that is not valid is shown as stored."""
    scheme = TaxIdScheme(scheme)
    try:
        if scheme is TaxIdScheme.ID_NPWP:
            digits = id_npwp.validate(number)
            if len(digits) == 15:
                return str(id_npwp.format(digits))
            return " ".join(digits[i : i + 4] for i in range(0, 16, 4))
        if scheme is TaxIdScheme.GB_VAT:
            return "GB " + str(gb_vat.format(gb_vat.validate(number)))
        if scheme is TaxIdScheme.AU_ABN:
            return str(au_abn.format(number))
        return str(eu_vat.compact(number))
    except ValidationError:
        return number


@lru_cache(maxsize=32)
def _territories(locale: str) -> tuple[tuple[str, str], ...]:
    names = Locale.parse(locale).territories
    return tuple(
        (code, str(name))
        for code, name in names.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    )


def country_codes(locale: str = "en") -> list[tuple[str, str]]:
    """``(code, name)`` of every country, named and sorted in ``locale``."""
    return sorted(_territories(locale), key=lambda item: item[1].casefold())


def country_name(code: str, locale: str = "en") -> str:
    """The country's name in ``locale`` (the code itself if CLDR has none)."""
    return dict(_territories(locale)).get(code.upper(), code)


def bill_to_lines(details: BillingDetails, locale: str = "en") -> tuple[str, ...]:
    """The address block of an invoice, one string per line: name, street
    lines, locality, country, and the tax ID with its short name
    (``NPWP 01.300.066.6-091.000``).

    The locality is "postal code city" where that is the custom (most of
    continental Europe), else "city, region postal code"; a region is on its
    own line in the former case.
    """
    lines = [details.name, details.line1]
    if details.line2:
        lines.append(details.line2)
    city, region, postal = details.city or "", details.region or "", details.postal_code or ""
    if details.country in _POSTAL_CODE_FIRST:
        lines.append(f"{postal} {city}".strip())
        lines.append(region)
    else:
        lines.append(", ".join(part for part in (city, f"{region} {postal}".strip()) if part))
    lines.append(country_name(details.country, locale))
    if details.tax_id and details.tax_id_scheme:
        scheme = TaxIdScheme(details.tax_id_scheme)
        lines.append(f"{SCHEME_SHORT_NAMES[scheme]} {format_tax_id(scheme, details.tax_id)}")
    return tuple(line for line in lines if line)
