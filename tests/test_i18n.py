"""Translations: the catalogues are complete and current, and each reader
sees the portal in their own language.

The portal's strings live in their own gettext domain (``customer_portal``).
English is the source language and has no catalogue: gettext falls back to
the msgid. ``make translations`` compiles the ``.mo`` files; the session
fixture below compiles them too when they are missing or older than their
``.po``, so plain ``pytest`` works.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import flask_babel
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import BASE_URL, SECRET, sign_in

from example_app.demo import load_demo_data
from flask_customer_portal import CustomerPortal, i18n
from flask_customer_portal.emails import render_message
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

REPO = Path(__file__).resolve().parents[1]
TRANSLATIONS = REPO / "flask_customer_portal" / "translations"
DOMAIN = "customer_portal"
POT = TRANSLATIONS / f"{DOMAIN}.pot"
#: The keywords of ``make extract-messages``: pybabel's defaults plus these.
EXTRA_KEYWORDS = ["_", "gettext", "ngettext:1,2", "lazy_gettext", "_l"]

PO_FILES = sorted(TRANSLATIONS.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
LOCALES = [path.parents[1].name for path in PO_FILES]

MessageKey = tuple[str | None, str | tuple[str, ...]]


# -- catalogues ------------------------------------------------------------------


def _read_catalog(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file)


def _key(message: Message) -> MessageKey:
    msgid = message.id
    return (message.context, tuple(msgid) if isinstance(msgid, (list, tuple)) else msgid)


def _messages(catalog: Catalog) -> dict[MessageKey, Message]:
    return {_key(message): message for message in catalog if message.id}


def _extract_source() -> dict[MessageKey, Message]:
    """What ``make extract-messages`` finds in the source today."""
    with (REPO / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, filename="babel.cfg")
    keywords = {**DEFAULT_KEYWORDS, **parse_keywords(EXTRA_KEYWORDS)}
    catalog = Catalog(domain=DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
        REPO, method_map, options_map, keywords=keywords
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return _messages(catalog)


def _describe(keys: set[MessageKey]) -> str:
    return "\n".join(
        f"  {msgid!r}" + (f" (context {ctx!r})" if ctx else "") for ctx, msgid in sorted(keys, key=str)
    )


@pytest.fixture(scope="module")
def source_messages() -> dict[MessageKey, Message]:
    return _extract_source()


def test_there_is_an_indonesian_catalogue() -> None:
    assert "id" in LOCALES, f"no translations/id/LC_MESSAGES/{DOMAIN}.po"
    assert not (TRANSLATIONS / "en").exists(), "English is the source language; it needs no catalogue"


def _assert_same_messages(
    found: dict[MessageKey, Message], source: dict[MessageKey, Message], problem: str, missing_label: str
) -> None:
    new = set(source) - set(found)
    gone = set(found) - set(source)
    assert not new and not gone, (
        f"{problem}\n{missing_label}:\n{_describe(new)}\nNo longer in the source:\n{_describe(gone)}"
    )


def test_the_template_matches_the_source(source_messages: dict[MessageKey, Message]) -> None:
    _assert_same_messages(
        _messages(_read_catalog(POT)),
        source_messages,
        f"{POT.name} is out of date; run `make extract-messages`.",
        "Not in the template",
    )


@pytest.mark.parametrize("po_path", PO_FILES, ids=LOCALES)
def test_catalogue_matches_the_source(po_path: Path, source_messages: dict[MessageKey, Message]) -> None:
    _assert_same_messages(
        _messages(_read_catalog(po_path)),
        source_messages,
        f"{po_path.relative_to(REPO)} is out of date: run `make extract-messages`, then translate.",
        "Missing from the catalogue",
    )


@pytest.mark.parametrize("po_path", PO_FILES, ids=LOCALES)
def test_catalogue_is_fully_translated_and_not_fuzzy(po_path: Path) -> None:
    catalog = _read_catalog(po_path)
    assert not catalog.fuzzy, "the header is marked fuzzy, so pybabel compile would skip the catalogue"
    problems = []
    for message in catalog:
        if not message.id:
            continue
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        if message.pluralizable:
            forms = message.string if isinstance(message.string, (list, tuple)) else (message.string,)
            if len(forms) != catalog.num_plurals:
                problems.append(f"{len(forms)} plural forms, {catalog.num_plurals} needed: {message.id!r}")
        else:
            forms = (message.string,)
        if not all(forms):
            problems.append(f"untranslated: {message.id!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("po_path", PO_FILES, ids=LOCALES)
def test_catalogue_has_its_languages_plural_rule(po_path: Path) -> None:
    # The header's rule must be CLDR's (as Babel knows it): a rule of one's
    # own picks the wrong form for some counts, silently.
    catalog = _read_catalog(po_path)
    locale = po_path.parents[1].name
    assert str(catalog.locale) == locale
    expected = get_plural(locale)
    assert catalog.num_plurals == expected.num_plurals
    assert catalog.plural_forms == expected.plural_forms


def test_indonesian_plural_forms() -> None:
    catalog = _read_catalog(TRANSLATIONS / "id" / "LC_MESSAGES" / f"{DOMAIN}.po")
    assert catalog.plural_forms == "nplurals=1; plural=0;"
    assert str(catalog.locale) == "id"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt is not installed")
@pytest.mark.parametrize("po_path", PO_FILES, ids=LOCALES)
def test_gnu_msgfmt_accepts_the_catalogue(po_path: Path, tmp_path: Path) -> None:
    # msgfmt -c checks what Babel does not: the header fields, and that
    # c-format strings keep their directives in every form.
    result = subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "out.mo"), str(po_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr


# -- placeholders --------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<type>[diouxXeEfFgGcrsa%])"
)


def _placeholders(text: str) -> set[str]:
    """``{"%(name)s", "%(month)02d"}``: every placeholder, exactly as written."""
    return {match.group(0) for match in _PLACEHOLDER.finditer(text) if match.group("type") != "%"}


def _sample_values(text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for match in _PLACEHOLDER.finditer(text):
        name, kind = match.group("name"), match.group("type")
        if name is not None:
            values[name] = 3 if kind in "diouxXeEfFgGc" else "x"
    return values


def _forms_for_a_single_count(catalog: Catalog) -> set[int]:
    """The plural forms used for exactly one count (English's "one", Arabic's
    "zero", "one" and "two"): only those may leave the number out, as in
    "Pause for a month"."""
    # gettext's own parser of the header's rule, the one the portal runs.
    index_of = gettext.c2py(catalog.plural_expr)
    counts: dict[int, set[int]] = {}
    for n in range(0, 1200):
        counts.setdefault(index_of(n), set()).add(n)
    return {index for index, numbers in counts.items() if len(numbers) == 1}


@pytest.mark.parametrize("po_path", PO_FILES, ids=LOCALES)
def test_translations_keep_the_placeholders(po_path: Path) -> None:
    catalog = _read_catalog(po_path)
    singular_forms = _forms_for_a_single_count(catalog)
    problems = []
    for message in catalog:
        if not message.id or not message.string:
            continue
        ids = message.id if message.pluralizable else (message.id,)
        forms = message.string if message.pluralizable else (message.string,)
        expected = set().union(*(_placeholders(text) for text in ids))
        samples = {name: value for text in ids for name, value in _sample_values(text).items()}
        if any(_PLACEHOLDER.search(text) and not _sample_values(text) for text in ids):
            problems.append(f"positional placeholder in msgid {message.id!r}: use %(name)s")
        for index, form in enumerate(forms):
            found = _placeholders(form)
            allowed_missing = {"%(num)d"} if message.pluralizable and index in singular_forms else set()
            if found != expected and not (found < expected and expected - found <= allowed_missing):
                problems.append(f"{message.id!r}: {form!r} has {sorted(found)}, expected {sorted(expected)}")
                continue
            # Flask-Babel %-formats a message whenever it has variables (always
            # for ngettext): a stray "%" would raise at render time.
            if expected or message.pluralizable:
                try:
                    _ = form % samples
                except (KeyError, ValueError, TypeError) as exc:
                    problems.append(f"{message.id!r}: {form!r} does not format: {exc!r}")
    problems.extend(f"{message.id!r}: {errors}" for message, errors in catalog.check())
    assert not problems, "\n".join(problems)


def test_placeholder_pattern() -> None:
    assert _placeholders("expires %(month)02d/%(year)d, 100%% %(name)s") == {
        "%(month)02d",
        "%(year)d",
        "%(name)s",
    }


# -- the compiled catalogues at work --------------------------------------------


def test_portal_gettext_uses_the_customer_portal_domain(app: Flask) -> None:
    with app.test_request_context("/portal/"):
        with flask_babel.force_locale("id"):
            assert i18n.gettext("Sign out") == "Keluar"
            assert i18n.gettext("Hello, %(name)s", name="Budi") == "Halo, Budi"
            assert i18n.ngettext("%(num)d key", "%(num)d keys", 1) == "1 kunci"
            assert i18n.ngettext("%(num)d key", "%(num)d keys", 3) == "3 kunci"
            assert str(i18n.lazy_gettext("Profile")) == "Profil"
            # The host's own (default ``messages``) domain is untouched.
            assert flask_babel.gettext("Sign out") == "Sign out"
        with flask_babel.force_locale("en"):
            # No English catalogue: the msgid comes back, plurals included.
            assert i18n.gettext("Sign out") == "Sign out"
            assert i18n.ngettext("%(num)d key", "%(num)d keys", 1) == "1 key"
            assert i18n.ngettext("%(num)d key", "%(num)d keys", 3) == "3 keys"


# -- pages -----------------------------------------------------------------------

_INDONESIAN_CHROME = ("Keluar", "Ringkasan", "Mode Uji")
_ENGLISH_CHROME = ("Sign out", "Overview", "Test mode")


def _lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match, "no <html lang> attribute"
    return match.group(1)


def test_budi_sees_his_portal_in_indonesian(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_budi")
    # His saved language wins over the browser's.
    page = client.get("/portal/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert page.status_code == 200
    html = page.text
    assert _lang(html) == "id"
    for text in (
        *_INDONESIAN_CHROME,
        "Halo, Budi Santoso",
        "Pembayaran diperlukan untuk",
        "Riwayat Penagihan",
    ):
        assert text in html, text
    for text in (*_ENGLISH_CHROME, "Hello,", "Billing history", "Payment needed"):
        assert text not in html, text


def test_ava_sees_her_portal_in_english(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_ava")
    page = client.get("/portal/", headers={"Accept-Language": "id-ID,id;q=0.9"})
    assert page.status_code == 200
    html = page.text
    assert _lang(html) == "en"
    for text in (*_ENGLISH_CHROME, "Hello, Ava Thompson", "Billing history"):
        assert text in html, text
    for text in (*_INDONESIAN_CHROME, "Halo", "Riwayat Penagihan"):
        assert text not in html, text


def test_a_customer_without_a_language_gets_the_browsers(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_chen")
    html = client.get("/portal/", headers={"Accept-Language": "id"}).text
    assert _lang(html) == "id"
    assert "Halo, Chen Wei" in html


@pytest.mark.parametrize(
    ("accept_language", "lang", "expected"),
    [
        ("id", "id", ("Masuk ke portal pelanggan Anda", "Alamat email", "Kirim tautan masuk ke email saya")),
        ("id-ID,id;q=0.9,en;q=0.8", "id", ("Masuk ke portal pelanggan Anda",)),
        ("fi", "en", ("Sign in to your customer portal", "Email address", "Email me a sign-in link")),
        ("fi-FI,fi;q=0.9", "en", ("Sign in to your customer portal",)),
        ("en-GB", "en", ("Sign in to your customer portal",)),
        (None, "en", ("Sign in to your customer portal",)),
    ],
)
def test_anonymous_visitors_get_the_browsers_language_or_english(
    client: FlaskClient, accept_language: str | None, lang: str, expected: tuple[str, ...]
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    page = client.get("/portal/login/biz_demo", headers=headers)
    assert page.status_code == 200
    assert _lang(page.text) == lang
    for text in expected:
        assert text in page.text, text
    assert ("Masuk" in page.text) == (lang == "id")


def test_form_errors_are_translated_per_request(client: FlaskClient) -> None:
    # The form's messages are lazy: each request shows them in its own language.
    for accept_language, message in [
        ("id", "Masukkan alamat email yang valid"),
        ("en", "Enter a valid email address"),
        ("id", "Masukkan alamat email yang valid"),
    ]:
        headers = {"Accept-Language": accept_language}
        page = client.get("/portal/login/biz_demo", headers=headers)
        response = client.post(
            "/portal/login/biz_demo",
            data={"csrf_token": csrf_token_from(page.text), "email": "not an address"},
            headers=headers,
        )
        assert response.status_code == 422
        assert message in response.text


def test_a_bad_link_is_explained_in_the_visitors_language(client: FlaskClient) -> None:
    page = client.get("/portal/session/not-a-token", headers={"Accept-Language": "id"})
    assert page.status_code == 404
    assert _lang(page.text) == "id"
    assert "Tautan ini tidak valid" in page.text
    page = client.get("/portal/session/not-a-token", headers={"Accept-Language": "fi"})
    assert "This link is not valid" in page.text


# -- emails ----------------------------------------------------------------------


def test_emails_use_the_customers_language(app: Flask) -> None:
    expires_at = datetime(2026, 11, 21, 20, 0, tzinfo=timezone.utc)
    with app.app_context():
        state = get_state(app)
        budi = state.storage.get_customer("cus_demo_budi")
        ava = state.storage.get_customer("cus_demo_ava")
        assert budi is not None and ava is not None
        link = f"{BASE_URL}/portal/session/token"
        to_budi = render_message(
            state, "session_link", to=budi.email, customer=budi, link=link, expires_at=expires_at
        )
        to_ava = render_message(
            state, "session_link", to=ava.email, customer=ava, link=link, expires_at=expires_at
        )
    assert to_budi.subject == "Tautan Anda ke portal pelanggan Acme Software"
    assert "Halo Budi Santoso," in to_budi.text
    assert "22 Nov 2026" in to_budi.text  # 03:00 in Jakarta
    assert 'lang="id"' in (to_budi.html or "")
    assert to_ava.subject == "Your link to the Acme Software customer portal"
    assert "Hello Ava Thompson," in to_ava.text
    assert "Nov 21, 2026" in to_ava.text  # noon in Los Angeles


@pytest.mark.parametrize(
    ("email", "accept_language", "subject"),
    [
        # A customer's saved language wins over the browser that asked.
        ("budi@example.com", "en", "Tautan masuk Anda untuk Acme Software"),
        ("ava@example.com", "id", "Your sign-in link for Acme Software"),
        # Without one, the language of the browser that asked.
        ("chen@example.com", "id", "Tautan masuk Anda untuk Acme Software"),
        ("chen@example.com", "fi", "Your sign-in link for Acme Software"),
    ],
)
def test_login_emails_use_the_customers_language(
    app: Flask, client: FlaskClient, mailer: MemoryMailer, email: str, accept_language: str, subject: str
) -> None:
    headers = {"Accept-Language": accept_language}
    page = client.get("/portal/login/biz_demo", headers=headers)
    response = client.post(
        "/portal/login/biz_demo",
        data={"csrf_token": csrf_token_from(page.text), "email": email},
        headers=headers,
    )
    assert response.status_code == 200
    get_state(app).wait_for_background_tasks()
    assert [message.subject for message in mailer.outbox] == [subject]


# -- a host app with its own Flask-Babel -----------------------------------------


@pytest.fixture(params=["host_babel_first", "host_babel_after"])
def host_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """A merchant app whose own Flask-Babel always picks English."""
    app = Flask("host_app_with_babel")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
    )
    db = SQLAlchemy()
    db.init_app(app)
    if request.param == "host_babel_first":
        Babel(app, locale_selector=lambda: "en")
        CustomerPortal(app, mailer=MemoryMailer(), payments=TestPaymentProvider())
    else:
        CustomerPortal(app, mailer=MemoryMailer(), payments=TestPaymentProvider())
        Babel(app, locale_selector=lambda: "en")

    @app.route("/account")
    def account() -> dict[str, str]:
        return {
            "locale": str(flask_babel.get_locale()),
            "portal_text": i18n.gettext("Sign out"),
        }

    with app.app_context():
        state = get_state(app)
        state.storage.create_all()
        load_demo_data(state.storage)
    yield app
    get_state(app).shutdown()
    with app.app_context():
        db.engine.dispose()


def test_the_portal_keeps_its_customers_language_inside_a_host_with_its_own_babel(host_app: Flask) -> None:
    client = host_app.test_client()
    headers = {"Accept-Language": "id"}
    assert client.get("/account", headers=headers).json == {"locale": "en", "portal_text": "Sign out"}

    sign_in(host_app, client, "cus_demo_budi")
    page = client.get("/portal/", headers=headers)
    assert page.status_code == 200
    assert _lang(page.text) == "id"
    assert "Keluar" in page.text and "Ringkasan" in page.text

    # The host's own pages keep the host's choice, before and after.
    assert client.get("/account", headers=headers).json == {"locale": "en", "portal_text": "Sign out"}

    anonymous = host_app.test_client()
    login = anonymous.get("/portal/login/biz_demo", headers=headers)
    assert _lang(login.text) == "id"
    assert "Masuk ke portal pelanggan Anda" in login.text
