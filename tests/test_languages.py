"""The language picker and right-to-left pages: ``portal.set_language``,
the saved language beating the browser's, the choice before sign-in, no
open redirect, the merchant's own catalogues, and ``<html dir>``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import T0, customer
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, open_link, sign_in
from rtl_pseudo_locale import PSEUDO_LOCALE, build_rtl_catalogue, pseudo

from flask_customer_portal import signals
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.i18n import language_name, match_language, text_direction
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent, Customer
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
CHEN = "cus_demo_chen"
LOGIN = "/portal/login/biz_demo"


def _locale(app: Flask, customer_id: str) -> str | None:
    with app.app_context():
        found = get_state(app).storage.get_customer(customer_id)
    assert found is not None
    return found.locale


def _events(app: Flask, customer_id: str) -> list[AuditEvent]:
    with app.app_context():
        events = get_state(app).storage.list_events(customer_id)  # type: ignore[attr-defined]
    return [e for e in events if e.action == "customer.language_changed"]


def _pick(client: FlaskClient, language: str, *, page: str = "/portal/", **fields: str) -> Any:
    """Choose ``language`` in the picker of ``page``, as the browser would."""
    html = client.get(page, headers={"Accept-Language": "en"}).text
    next_value = re.search(r'name="next" value="([^"]*)"', html)
    assert next_value is not None, "the page has no language picker"
    data = {"csrf_token": csrf_token_from(html), "language": language, "next": next_value.group(1), **fields}
    return client.post("/portal/language", data=data, headers={"Accept-Language": "en"})


def _html_lang(html: str) -> tuple[str, str]:
    match = re.search(r'<html lang="([^"]+)" dir="([^"]+)">', html)
    assert match is not None
    return match.group(1), match.group(2)


# --- the picker ----------------------------------------------------------------------


def test_every_page_has_the_picker_with_each_language_in_its_own_language(
    app: Flask, client: FlaskClient
) -> None:
    login_page = client.get(LOGIN, headers={"Accept-Language": "en"}).text
    sign_in(app, client, AVA)
    for html in (login_page, client.get("/portal/").text, client.get("/portal/invoices/inv_nobody").text):
        assert '<form method="post" action="/portal/language" class="portal-language">' in html
        assert '<option value="en" lang="en" selected>English</option>' in html
        assert '<option value="id" lang="id">Indonesia</option>' in html
        assert '<label for="portal-language">Language</label>' in html


def test_one_language_means_no_picker(tmp_path: Path) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'one.db'}", CUSTOMER_PORTAL_LANGUAGES=("en",))
    html = app.test_client().get(LOGIN).text
    assert "portal-language" not in html
    assert _html_lang(html) == ("en", "ltr")


def test_a_customer_saves_a_language_that_beats_the_browsers(app: Flask, ava_client: FlaskClient) -> None:
    seen: list[dict[str, Any]] = []
    with signals.language_changed.connected_to(lambda sender, **kw: seen.append(kw), app):
        response = _pick(ava_client, "id", page="/portal/invoices?page=2")
    assert response.status_code == 303
    assert response.headers["Location"] == "/portal/invoices?page=2"
    assert _locale(app, AVA) == "id"
    [event] = _events(app, AVA)
    assert event.details == {"locale": "id", "previous": "en"}
    assert [(kw["customer"].locale, kw["locale"], kw["previous"]) for kw in seen] == [("id", "id", "en")]

    page = ava_client.get("/portal/", headers={"Accept-Language": "en"}).text
    assert _html_lang(page) == ("id", "ltr")
    assert '<option value="id" lang="id" selected>Indonesia</option>' in page
    # The choice is the customer's, not this browser's: another browser follows it.
    other = app.test_client()
    sign_in(app, other, AVA)
    assert _html_lang(other.get("/portal/", headers={"Accept-Language": "en"}).text)[0] == "id"


def test_choosing_the_same_language_changes_nothing(app: Flask, ava_client: FlaskClient) -> None:
    assert _pick(ava_client, "en").status_code == 303
    assert _events(app, AVA) == []


def test_emails_follow_the_saved_language(app: Flask, client: FlaskClient, mailer: MemoryMailer) -> None:
    sign_in(app, client, CHEN)
    assert _locale(app, CHEN) is None
    _pick(client, "id")
    with app.app_context():
        app.extensions["customer_portal"].send_invite(CHEN)
    assert mailer.outbox[-1].subject == "Acme Software mengundang Anda ke portal pelanggan Anda"


def test_only_the_signed_in_customer_changes(app: Flask, ava_client: FlaskClient) -> None:
    """No customer id is taken from the request: a planted one is ignored."""
    _pick(ava_client, "id", customer_id=BUDI, customer=BUDI)
    assert _locale(app, AVA) == "id"
    assert _locale(app, BUDI) == "id"  # as before (demo data)
    _pick(ava_client, "en", customer_id=BUDI)
    assert _locale(app, BUDI) == "id"
    assert _events(app, BUDI) == []


# --- refused requests ------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_no_change_without_a_good_csrf_token(app: Flask, ava_client: FlaskClient, token: str | None) -> None:
    data = {"language": "id", "next": "/portal/"}
    if token is not None:
        data["csrf_token"] = token
    response = ava_client.post("/portal/language", data=data)
    assert response.status_code == 400
    assert _locale(app, AVA) == "en"
    assert _events(app, AVA) == []


@pytest.mark.parametrize("language", ["fi", "", "ID", "en-US", "id\x00", "x" * 300])
def test_an_unknown_language_is_refused_without_a_change(
    app: Flask, ava_client: FlaskClient, language: str
) -> None:
    response = _pick(ava_client, language)
    assert response.status_code == 422
    assert "The portal is not available in that language. Nothing was changed." in response.text
    assert _locale(app, AVA) == "en"
    assert _events(app, AVA) == []


def test_a_missing_language_is_refused(app: Flask, ava_client: FlaskClient) -> None:
    token = csrf_token_from(ava_client.get("/portal/").text)
    assert ava_client.post("/portal/language", data={"csrf_token": token}).status_code == 422
    assert _locale(app, AVA) == "en"


def test_get_is_not_allowed(ava_client: FlaskClient) -> None:
    assert ava_client.get("/portal/language?language=id").status_code == 405


@pytest.mark.parametrize(
    "next_value",
    [
        "https://evil.example/",
        "//evil.example/portal/",
        "/\\evil.example",
        "\\\\evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "/portal/subscriptions/sub_demo_ava_sync/cancel",  # a POST-only action
        "/portal/language",
        "/not-the-portal",
        "/portal/static/portal.css",
        "/portal/\r\nLocation: https://evil.example",
        "",
    ],
)
def test_going_back_stays_inside_the_portal(app: Flask, ava_client: FlaskClient, next_value: str) -> None:
    token = csrf_token_from(ava_client.get("/portal/").text)
    response = ava_client.post(
        "/portal/language", data={"csrf_token": token, "language": "id", "next": next_value}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/portal/"


def test_going_back_signed_out_lands_on_the_login_page(client: FlaskClient) -> None:
    token = csrf_token_from(client.get(LOGIN).text)
    response = client.post(
        "/portal/language", data={"csrf_token": token, "language": "id", "next": "https://evil.example/"}
    )
    assert response.headers["Location"] == LOGIN


# --- before signing in -------------------------------------------------------------------


def test_a_visitors_choice_lasts_for_the_visit(app: Flask, client: FlaskClient, mailer: MemoryMailer) -> None:
    response = _pick(client, "id", page=LOGIN)
    assert response.headers["Location"] == LOGIN
    page = client.get(LOGIN, headers={"Accept-Language": "en"}).text
    assert _html_lang(page) == ("id", "ltr")
    # Signing in: a customer without a saved language keeps the visit's;
    # nothing is saved on the customer until they choose while signed in.
    open_link(client, _invite_link(app, CHEN))
    assert _html_lang(client.get("/portal/", headers={"Accept-Language": "en"}).text)[0] == "id"
    assert _locale(app, CHEN) is None


def test_a_saved_language_beats_the_visits_choice(app: Flask, client: FlaskClient) -> None:
    _pick(client, "id", page=LOGIN)
    open_link(client, _invite_link(app, AVA))
    assert _html_lang(client.get("/portal/").text)[0] == "en"


def _invite_link(app: Flask, customer_id: str) -> str:
    with app.app_context():
        return app.extensions["customer_portal"].create_session(customer_id).link


# --- query counts -------------------------------------------------------------------------


def test_the_picker_costs_no_queries(app: Flask, count_queries: Callable[..., Any]) -> None:
    one = app.test_client()
    sign_in(app, one, AVA)
    two = app.test_client()
    sign_in(app, two, AVA)
    _pick(two, "en")  # the visit's choice is in the session now
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    with count_queries(engine) as plain:
        one.get("/portal/")
    with count_queries(engine) as picked:
        two.get("/portal/")
    assert picked.count == plain.count, picked.statements


def test_saving_a_language_takes_a_fixed_number_of_queries(
    app: Flask, ava_client: FlaskClient, count_queries: Callable[..., Any]
) -> None:
    token = csrf_token_from(ava_client.get("/portal/").text)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    with count_queries(engine) as queries:
        response = ava_client.post("/portal/language", data={"csrf_token": token, "language": "id"})
    assert response.status_code == 303
    # the session with its customer, the customer row, the update and the audit event
    assert queries.count <= 5, queries.statements


# --- storage ---------------------------------------------------------------------------------


def test_store_saves_and_clears_the_locale_with_its_event(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_customer(customer("cus_b", locale="en"))
    event = AuditEvent(customer_id="cus_a", action="customer.language_changed", occurred_at=T0)
    saved = store.set_locale("cus_a", "id", event=event)
    assert isinstance(saved, Customer) and saved.locale == "id"
    assert store.get_customer("cus_a") == saved
    assert [e.action for e in store.list_events("cus_a")] == ["customer.language_changed"]
    assert store.get_customer("cus_b") is not None and store.get_customer("cus_b").locale == "en"  # type: ignore[union-attr]
    cleared = store.set_locale("cus_a", None)
    assert cleared is not None and cleared.locale is None


def test_store_set_locale_for_nobody(store: SQLAlchemyStorage) -> None:
    event = AuditEvent(customer_id="cus_nobody", action="customer.language_changed", occurred_at=T0)
    assert store.set_locale("cus_nobody", "id", event=event) is None
    assert list(store.list_events("cus_nobody")) == []


# --- more languages and right to left --------------------------------------------------------


def test_language_names_and_directions() -> None:
    assert [language_name(c) for c in ("en", "id", "fr", "ar")] == [
        "English",
        "Indonesia",
        "Français",
        "العربية",
    ]
    assert language_name("zz") == "zz"
    assert [text_direction(c) for c in ("en", "id", "ar", "he", "fa", "zz")] == [
        "ltr",
        "ltr",
        "rtl",
        "rtl",
        "rtl",
        "ltr",
    ]


@pytest.fixture
def rtl_app(tmp_path: Path) -> Iterator[Flask]:
    """An app with the right-to-left pseudo-locale as a merchant's own catalogue."""
    build_rtl_catalogue(tmp_path / "translations")
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'rtl.db'}",
        CUSTOMER_PORTAL_LANGUAGES=("en", "id", PSEUDO_LOCALE),
        CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES=[str(tmp_path / "translations")],
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_a_merchants_catalogue_adds_a_right_to_left_language(rtl_app: Flask, app: Flask) -> None:
    client = rtl_app.test_client()
    sign_in(rtl_app, client, CHEN)
    _pick(client, PSEUDO_LOCALE)
    page = client.get("/portal/").text
    assert _html_lang(page) == (PSEUDO_LOCALE, "rtl")
    assert pseudo("Overview") in page
    assert f'<option value="{PSEUDO_LOCALE}" lang="{PSEUDO_LOCALE}" selected>العربية</option>' in page
    # Saved on Chen: it beats her browser's English.
    assert _html_lang(client.get("/portal/", headers={"Accept-Language": "en"}).text)[1] == "rtl"
    # The package's own languages still come from the package.
    budi = rtl_app.test_client()
    sign_in(rtl_app, budi, BUDI)
    budi_page = budi.get("/portal/").text
    assert _html_lang(budi_page) == ("id", "ltr")
    assert "Ringkasan" in budi_page
    # Another app in the same process knows nothing of that catalogue.
    other = app.test_client()
    sign_in(app, other, CHEN)
    assert pseudo("Overview") not in other.get("/portal/", headers={"Accept-Language": "ar"}).text


def test_translation_directories_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES"):
        make_portal_app(
            f"sqlite:///{tmp_path / 'bad.db'}", CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES="translations"
        )


# --- languages with a region or a script ("pt_BR", "zh_Hans") ---------------------------

OFFERED = ("en", "ar", "es", "id", "pt_BR", "zh_Hans")


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("pt-BR", "pt_BR"),
        ("pt_BR", "pt_BR"),
        ("pt-br", "pt_BR"),
        ("pt", "pt_BR"),
        ("pt-PT", "pt_BR"),  # Portuguese rather than English
        ("pt-BR-x-private", "pt_BR"),
        ("zh-CN", "zh_Hans"),
        ("zh-Hans", "zh_Hans"),
        ("zh-Hans-CN", "zh_Hans"),
        ("zh", "zh_Hans"),
        ("zh-SG", "zh_Hans"),
        ("zh-TW", None),  # Traditional characters: not the Simplified catalogue
        ("zh-Hant", None),
        ("zh-HK", None),
        ("id-ID", "id"),
        ("es-419", "es"),
        ("en-GB", "en"),
        ("fr", None),
        ("*", None),
        ("", None),
    ],
)
def test_a_tag_finds_the_catalogue_for_its_language_and_script(tag: str, expected: str | None) -> None:
    assert match_language(tag, OFFERED) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("pt-BR,pt;q=0.9,en;q=0.5", "pt-BR"),
        ("pt", "pt-BR"),
        ("zh-CN,zh;q=0.9,en;q=0.5", "zh-Hans"),
        ("zh-Hans", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("zh-TW,en;q=0.5", "en"),
        ("fr-FR,zh-CN;q=0.8,en;q=0.5", "zh-Hans"),
    ],
)
def test_accept_language_chooses_a_catalogue_with_a_region_or_script(
    tmp_path: Path, header: str, expected: str
) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'tags.db'}", CUSTOMER_PORTAL_LANGUAGES=OFFERED)
    html = app.test_client().get(LOGIN, headers={"Accept-Language": header}).text
    assert _html_lang(html) == (expected, "ltr")
    code = expected.replace("-", "_")
    assert f'<option value="{code}" lang="{expected}" selected>' in html


def test_a_saved_language_with_a_region_beats_the_browsers(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, AVA)
    response = _pick(client, "pt_BR")
    assert response.status_code == 303
    assert _locale(app, AVA) == "pt_BR"
    html = client.get("/portal/", headers={"Accept-Language": "en"}).text
    assert _html_lang(html) == ("pt-BR", "ltr")
    assert '<option value="pt_BR" lang="pt-BR" selected>Português (Brasil)</option>' in html


@pytest.mark.parametrize("saved", ["pt-BR", "pt_BR", "pt"])
def test_a_saved_locale_is_matched_like_a_browsers(saved: str) -> None:
    assert match_language(saved, OFFERED) == "pt_BR"


def test_language_codes_in_the_configuration(tmp_path: Path) -> None:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'ok.db'}", CUSTOMER_PORTAL_LANGUAGES=("en", "pt_BR", "zh_Hans")
    )
    with app.app_context():
        assert get_state(app).config.languages == ("en", "pt_BR", "zh_Hans")
    for bad in (("en", "pt-BR"), ("en", "PT"), ("en", "zh_hans")):
        with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_LANGUAGES"):
            make_portal_app(f"sqlite:///{tmp_path / 'bad.db'}", CUSTOMER_PORTAL_LANGUAGES=bad)


@pytest.mark.parametrize(
    "header", ["zh-CN", "zh-Hans", "zh", "zh-SG", "zh-Hans-CN", "zh-CN,zh;q=0.9,en;q=0.8"]
)
def test_a_chinese_browser_gets_the_simplified_chinese_catalogue(app: Flask, header: str) -> None:
    html = app.test_client().get(LOGIN, headers={"Accept-Language": header}).text
    assert _html_lang(html) == ("zh-Hans", "ltr")
    assert "登录您的客户门户" in html
    assert '<option value="zh_Hans" lang="zh-Hans" selected>中文 (简体)</option>' in html


def test_a_traditional_chinese_browser_does_not_get_simplified_chinese(app: Flask) -> None:
    html = app.test_client().get(LOGIN, headers={"Accept-Language": "zh-TW,en;q=0.5"}).text
    assert _html_lang(html) == ("en", "ltr")


def test_a_locale_saved_as_a_bcp_47_tag_gets_its_catalogue(app: Flask, client: FlaskClient) -> None:
    # A host may save "zh-CN" (or "pt-BR") on the customer itself.
    with app.app_context():
        get_state(app).storage.set_locale(AVA, "zh-CN")
    sign_in(app, client, AVA)
    html = client.get("/portal/", headers={"Accept-Language": "en"}).text
    assert _html_lang(html) == ("zh-Hans", "ltr")
    assert "概览" in html
