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
* Twenty-eight more kinds, named as Stripe names them (``ch_vat``,
  ``no_vat``, ``nz_gst``, ``in_gst``, ``us_ein``, ``br_cnpj``, …; see
  :data:`SCHEMES`). Each is checked with python-stdnum where it has a module
  for that number (check digits included) and against the number's shape
  where it has none (``sg_gst``, ``za_vat``, ``ae_trn``, ``sa_vat``,
  ``hk_br``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType, ModuleType

from babel import Locale
from stdnum.ar import cuit as ar_cuit
from stdnum.au import abn as au_abn
from stdnum.br import cnpj as br_cnpj
from stdnum.br import cpf as br_cpf
from stdnum.ca import bn as ca_bn
from stdnum.ch import vat as ch_vat
from stdnum.cl import rut as cl_rut
from stdnum.co import nit as co_nit
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.gb import vat as gb_vat
from stdnum.id import npwp as id_npwp
from stdnum.il import hp as il_hp
from stdnum.in_ import gstin as in_gstin
from stdnum.is_ import vsk as is_vsk
from stdnum.jp import cn as jp_cn
from stdnum.kr import brn as kr_brn
from stdnum.mx import rfc as mx_rfc
from stdnum.no import mva as no_mva
from stdnum.nz import ird as nz_ird
from stdnum.pe import ruc as pe_ruc
from stdnum.ru import inn as ru_inn
from stdnum.sg import uen as sg_uen
from stdnum.th import tin as th_tin
from stdnum.tr import vkn as tr_vkn
from stdnum.tw import ubn as tw_ubn
from stdnum.us import ein as us_ein

from .storage import BillingDetails, TaxIdScheme

__all__ = [
    "EU_COUNTRIES",
    "SCHEMES",
    "SCHEME_EXAMPLES",
    "SCHEME_SHORT_NAMES",
    "InvalidTaxId",
    "SchemeRule",
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


def _stdnum(module: ModuleType) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """Check and format functions of a python-stdnum module (its compact
    form where it has no ``format``)."""
    check = module.validate
    show = getattr(module, "format", None) or module.compact
    # Spaces go first: people group digits with them where a module expects
    # only its own separators (an EIN typed "91 1144442").
    return (lambda number: str(check("".join(number.split())))), (lambda number: str(show(number)))


def _shape(pattern: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """For a number python-stdnum has no module for: the compact form
    (no spaces, dots, slashes or hyphens, upper case) must match ``pattern``."""
    compiled = re.compile(pattern)

    def check(number: str) -> str:
        compact = re.sub(r"[\s./-]", "", number).upper()
        if not compiled.fullmatch(compact):
            raise InvalidFormat()
        return compact

    return check, check


@dataclass(frozen=True, slots=True)
class SchemeRule:
    """How one kind of tax ID is called, checked and written."""

    #: What it is called on an invoice, in any language (``"GSTIN"``).
    short_name: str
    #: ISO code of the country that issues it (``"EU"`` for EU VAT numbers).
    country: str
    #: A valid number, written as people write it (for hints).
    example: str
    #: The compact form of a number, or :class:`stdnum.exceptions.ValidationError`.
    check: Callable[[str], str]
    #: A compact number as people read it.
    show: Callable[[str], str]


def _rule(
    short_name: str, country: str, example: str, how: tuple[Callable[[str], str], Callable[[str], str]]
) -> SchemeRule:
    return SchemeRule(short_name, country, example, *how)


#: Every kind of tax ID the portal knows. The first four have their own
#: code in :func:`validate_tax_id` and :func:`format_tax_id` (prefixes and
#: the two lengths of NPWP).
SCHEMES: Mapping[TaxIdScheme, SchemeRule] = MappingProxyType(
    {
        TaxIdScheme.EU_VAT: _rule("VAT", "EU", "DE136695976", _stdnum(eu_vat)),
        TaxIdScheme.ID_NPWP: _rule("NPWP", "ID", "01.300.066.6-091.000", _stdnum(id_npwp)),
        TaxIdScheme.GB_VAT: _rule("VAT", "GB", "GB 980 7806 84", _stdnum(gb_vat)),
        TaxIdScheme.AU_ABN: _rule("ABN", "AU", "51 824 753 556", _stdnum(au_abn)),
        TaxIdScheme.CH_VAT: _rule("VAT", "CH", "CHE-107.787.577 MWST", _stdnum(ch_vat)),
        TaxIdScheme.NO_VAT: _rule("VAT", "NO", "NO 995 525 828 MVA", _stdnum(no_mva)),
        TaxIdScheme.NZ_GST: _rule("GST", "NZ", "49-091-850", _stdnum(nz_ird)),
        TaxIdScheme.IN_GST: _rule("GSTIN", "IN", "27AAPFU0939F1ZV", _stdnum(in_gstin)),
        TaxIdScheme.SG_UEN: _rule("UEN", "SG", "00192200M", _stdnum(sg_uen)),
        TaxIdScheme.SG_GST: _rule("GST Reg. No.", "SG", "M21234567K", _shape(r"M[0-9A-Z][0-9]{7}[0-9A-Z]")),
        TaxIdScheme.CA_BN: _rule("BN", "CA", "123026635", _stdnum(ca_bn)),
        TaxIdScheme.US_EIN: _rule("EIN", "US", "91-1144442", _stdnum(us_ein)),
        TaxIdScheme.BR_CNPJ: _rule("CNPJ", "BR", "16.727.230/0001-97", _stdnum(br_cnpj)),
        TaxIdScheme.BR_CPF: _rule("CPF", "BR", "390.533.447-05", _stdnum(br_cpf)),
        TaxIdScheme.MX_RFC: _rule("RFC", "MX", "GODE 561231 GR8", _stdnum(mx_rfc)),
        TaxIdScheme.JP_CN: _rule("CN", "JP", "5-8356-7825-6246", _stdnum(jp_cn)),
        TaxIdScheme.KR_BRN: _rule("BRN", "KR", "116-82-00276", _stdnum(kr_brn)),
        TaxIdScheme.ZA_VAT: _rule("VAT", "ZA", "4123456789", _shape(r"4[0-9]{9}")),
        TaxIdScheme.AE_TRN: _rule("TRN", "AE", "100123456700003", _shape(r"100[0-9]{12}")),
        TaxIdScheme.SA_VAT: _rule("VAT", "SA", "310123456700003", _shape(r"3[0-9]{13}3")),
        TaxIdScheme.TR_TIN: _rule("VKN", "TR", "4540536920", _stdnum(tr_vkn)),
        TaxIdScheme.CL_TIN: _rule("RUT", "CL", "76.086.428-5", _stdnum(cl_rut)),
        TaxIdScheme.CO_NIT: _rule("NIT", "CO", "213.123.432-1", _stdnum(co_nit)),
        TaxIdScheme.AR_CUIT: _rule("CUIT", "AR", "20-05536168-2", _stdnum(ar_cuit)),
        TaxIdScheme.IS_VAT: _rule("VSK", "IS", "00621", _stdnum(is_vsk)),
        TaxIdScheme.RU_INN: _rule("INN", "RU", "7707083893", _stdnum(ru_inn)),
        TaxIdScheme.TW_VAT: _rule("UBN", "TW", "00501503", _stdnum(tw_ubn)),
        TaxIdScheme.IL_VAT: _rule("VAT", "IL", "516179157", _stdnum(il_hp)),
        TaxIdScheme.TH_VAT: _rule("TIN", "TH", "1-2345-45678-78-1", _stdnum(th_tin)),
        TaxIdScheme.PE_RUC: _rule("RUC", "PE", "20512333797", _stdnum(pe_ruc)),
        TaxIdScheme.HK_BR: _rule("BR", "HK", "12345678", _shape(r"[0-9]{8}")),
    }
)

#: What each kind of number is called on an invoice, in any language.
SCHEME_SHORT_NAMES: Mapping[TaxIdScheme, str] = MappingProxyType(
    {scheme: rule.short_name for scheme, rule in SCHEMES.items()}
)

#: A valid number of each scheme, written as people write it (for hints).
SCHEME_EXAMPLES: Mapping[TaxIdScheme, str] = MappingProxyType(
    {scheme: rule.example for scheme, rule in SCHEMES.items()}
)

#: The usual business tax ID of each country, where it has more than one here.
_USUAL = {"BR": TaxIdScheme.BR_CNPJ, "SG": TaxIdScheme.SG_UEN}

_COUNTRY_SCHEMES = MappingProxyType(
    {
        **dict.fromkeys(EU_COUNTRIES, TaxIdScheme.EU_VAT),
        **{rule.country: scheme for scheme, rule in SCHEMES.items() if rule.country != "EU"},
        **_USUAL,
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
        return SCHEMES[scheme].check(raw)
    except InvalidChecksum:
        raise InvalidTaxId(scheme, TaxIdProblem.CHECKSUM) from None
    except (InvalidFormat, InvalidLength, InvalidComponent, ValidationError):
        raise InvalidTaxId(scheme, TaxIdProblem.FORMAT) from None


def format_tax_id(scheme: TaxIdScheme, number: str) -> str:
    """A stored (compact) number as people read it: ``01.300.066.6-091.000``
    for a 15-digit NPWP, ``0013 0006 6609 1000`` for a 16-digit one,
    ``GB 980 7806 84``, ``51 824 753 556``, ``CHE-107.787.577 MWST``; EU VAT
    numbers stay compact, as VIES prints them, and so do the kinds
    python-stdnum cannot format. A number that is not valid is shown as
    stored."""
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
        if scheme is TaxIdScheme.EU_VAT:
            return str(eu_vat.compact(number))
        return SCHEMES[scheme].show(SCHEMES[scheme].check(number))
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
