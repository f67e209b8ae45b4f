"""The brand without a template override: logo, accent colours and colour
scheme from ``CUSTOMER_PORTAL_BRAND_*``, the start-up contrast check, and
what the pages and their Content-Security-Policy carry."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import close_app, make_portal_app

from flask_customer_portal.branding import DARK, LIGHT, MIN_TEXT_CONTRAST, contrast_ratio, load_brand
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.views._base import SECURITY_HEADERS

STATIC = Path(__file__).resolve().parent.parent / "flask_customer_portal" / "static"
LOGIN = "/portal/login/biz_demo"
PURPLE = "#6d28d9"  # 7.1:1 on white, 2.7:1 on the dark page
LILAC = "#c4b5fd"  # 10:1 on the dark page, 1.8:1 on white


def _brand(**settings: Any) -> Any:
    return load_brand({f"CUSTOMER_PORTAL_BRAND_{k.upper()}": v for k, v in settings.items()})


def _refused(**settings: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        _brand(**settings)
    return caught.value


# -- the contrast check ----------------------------------------------------------


def test_contrast_ratio_is_wcags() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#fff", "#ffffff") == pytest.approx(1.0)
    # Published examples: #777 on white is the classic 4.48:1 near miss.
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#0b57d0", "#ffffff") == pytest.approx(contrast_ratio("#ffffff", "#0b57d0"))


def test_without_settings_the_portals_own_colours_follow_the_visitor() -> None:
    brand = _brand()
    assert (brand.logo_url, brand.accent_color, brand.accent_color_dark) == (None, None, None)
    assert brand.color_scheme == "auto"
    assert brand.themes == (LIGHT, DARK)
    assert brand.css == ""
    assert brand.content_security_policy == {}


@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=lambda t: t.name)
def test_the_default_accents_pass_on_every_background_of_their_theme(theme: Any) -> None:
    for _what, background in (*theme.backgrounds, ("button", theme.accent_text)):
        assert contrast_ratio(theme.default_accent, background) >= MIN_TEXT_CONTRAST


def test_an_accent_for_the_light_theme_only() -> None:
    brand = _brand(accent_color=PURPLE.upper(), color_scheme="light")
    assert brand.accent_color == PURPLE
    assert brand.accent_color_dark is None
    assert brand.css == f":root{{--portal-accent:{PURPLE}}}"


def test_an_accent_on_a_light_background_is_refused_for_the_dark_theme() -> None:
    error = _refused(accent_color=PURPLE)  # scheme "auto": both themes
    assert error.key == "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR"
    assert "dark theme's page (#0d1117)" in str(error)
    assert "4.5:1" in str(error)
    assert "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK" in str(error)


def test_each_theme_gets_its_own_accent() -> None:
    brand = _brand(accent_color=PURPLE, accent_color_dark=LILAC)
    assert brand.css == (
        f":root{{--portal-accent:{PURPLE}}}@media (prefers-color-scheme: dark){{:root{{--portal-accent:{LILAC}}}}}"
    )


def test_a_dark_only_portal_takes_the_one_accent_for_its_dark_theme() -> None:
    brand = _brand(accent_color=LILAC, color_scheme="dark")
    assert brand.themes == (DARK,)
    assert brand.accent_color_dark == LILAC
    assert brand.css == f":root{{--portal-accent:{LILAC}}}"
    assert _refused(accent_color=PURPLE, color_scheme="dark").key == "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR"


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        # Light blue reads on a dark page but not on the light theme's panels.
        ({"accent_color": "#7fb3ff", "color_scheme": "light"}, "ACCENT_COLOR", "light theme's page"),
        # Just under 4.5:1 on the light page (#f4f5f7).
        ({"accent_color": "#767676", "color_scheme": "light"}, "ACCENT_COLOR", "light theme's page"),
        ({"accent_color": "#0b57d0", "accent_color_dark": "#1f6feb"}, "ACCENT_COLOR_DARK", "dark theme's"),
        ({"accent_color": "#0b57d0", "accent_color_dark": "#555"}, "ACCENT_COLOR_DARK", "dark theme's"),
    ],
)
def test_an_unreadable_accent_is_refused_naming_its_key(
    settings: dict[str, str], key: str, words: str
) -> None:
    error = _refused(**settings)
    assert error.key == f"CUSTOMER_PORTAL_BRAND_{key}"
    assert words in str(error)
    assert "WCAG AA needs 4.5:1" in str(error)


@pytest.mark.parametrize(
    "value", ["purple", "#12345", "6d28d9", "#6d28d9ff", "rgb(1,2,3)", 0x6D28D9, "#6d28d9;}"]
)
def test_an_accent_that_is_not_a_hex_colour_is_refused(value: object) -> None:
    assert _refused(accent_color=value).key == "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR"
    assert _refused(accent_color_dark=value).key == "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK"


@pytest.mark.parametrize("value", ["system", "Dark", "", None, True])
def test_an_unknown_colour_scheme_is_refused(value: object) -> None:
    assert _refused(color_scheme=value).key == "CUSTOMER_PORTAL_BRAND_COLOR_SCHEME"


# -- the logo --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/static/logo.svg", "/brand/logo%20v2.png?v=3", "https://cdn.example.com/a/logo.svg"]
)
def test_a_logo_on_this_site_or_over_https(url: str) -> None:
    assert _brand(logo_url=url).logo_url == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:image/svg+xml,<svg onload=alert(1)>",
        "http://cdn.example.com/logo.svg",
        "//cdn.example.com/logo.svg",
        "/\\cdn.example.com/logo.svg",
        "logo.svg",
        "https://",
        "https://user:pw@cdn.example.com/logo.svg",
        "/logo.svg\n",
        "/a logo.svg",
        42,
    ],
)
def test_a_logo_anywhere_else_is_refused(url: object) -> None:
    assert _refused(logo_url=url).key == "CUSTOMER_PORTAL_BRAND_LOGO_URL"


def test_a_logo_elsewhere_is_allowed_by_its_origin_only() -> None:
    policy = _brand(logo_url="https://cdn.example.com/a/logo.svg").content_security_policy
    assert policy == {"img-src": ("https://cdn.example.com",)}
    assert _brand(logo_url="/static/logo.svg").content_security_policy == {}


# -- the stylesheets agree with the check --------------------------------------


def _custom_properties(css: str) -> dict[str, str]:
    root = re.search(r":root\s*\{(.*?)\}", css, re.S)
    assert root
    return dict(re.findall(r"--([\w-]+):\s*([^;]+);", root.group(1)))


@pytest.mark.parametrize(("theme", "stylesheet"), [(LIGHT, "portal.css"), (DARK, "portal-dark.css")])
def test_the_checked_backgrounds_are_the_stylesheets(theme: Any, stylesheet: str) -> None:
    values = _custom_properties((STATIC / stylesheet).read_text())
    by_role = dict(theme.backgrounds)
    assert values["portal-bg"] == by_role["page"]
    assert values["portal-surface"] == by_role["panel"]
    assert values["portal-warning-bg"] == by_role["attention panel"]
    assert values["portal-accent"] == theme.default_accent
    assert values["portal-accent-text"] == theme.accent_text


def test_the_dark_themes_text_colours_pass_on_its_backgrounds() -> None:
    values = _custom_properties((STATIC / "portal-dark.css").read_text())
    backgrounds = [
        values[k] for k in ("portal-bg", "portal-surface", "portal-warning-bg", "portal-notice-bg")
    ]
    for name in ("portal-text", "portal-muted", "portal-danger", "portal-warning-border", "portal-success"):
        for background in backgrounds:
            assert contrast_ratio(values[name], background) >= MIN_TEXT_CONTRAST, (name, background)


# -- on the page -----------------------------------------------------------------


@pytest.fixture
def branded(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = make_portal_app(f"sqlite:///{tmp_path / f'portal{len(apps)}.db'}", **config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


def _style_hash(html: str) -> str:
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style, "no inline style"
    return "'sha256-" + base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode() + "'"


def test_pages_carry_the_brand_and_the_policy_allows_exactly_it(branded: Callable[..., Flask]) -> None:
    app = branded(
        CUSTOMER_PORTAL_BRAND_ACCENT_COLOR=PURPLE,
        CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK=LILAC,
        CUSTOMER_PORTAL_BRAND_LOGO_URL="https://cdn.example.com/logo.svg",
    )
    response = app.test_client().get(LOGIN)
    html = response.text
    assert '<meta name="color-scheme" content="light dark">' in html
    assert 'href="/portal/static/portal-dark.css" media="(prefers-color-scheme: dark)"' in html
    assert '<img class="portal-logo" src="https://cdn.example.com/logo.svg" alt="Acme Software">' in html
    policy = dict(
        part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["style-src"] == "'self' " + _style_hash(html)
    assert policy["img-src"] == "'self' data: https://cdn.example.com"


def test_without_brand_settings_pages_keep_the_strict_policy(branded: Callable[..., Flask]) -> None:
    response = branded().test_client().get(LOGIN)
    assert "<style>" not in response.text
    assert "portal-logo" not in response.text
    assert ">Acme Software</div>" in response.text
    assert response.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("scheme", "meta", "dark_link"),
    [
        ("light", "light", None),
        ("dark", "dark", '<link rel="stylesheet" href="/portal/static/portal-dark.css">'),
    ],
)
def test_a_fixed_scheme(branded: Callable[..., Flask], scheme: str, meta: str, dark_link: str | None) -> None:
    html = branded(CUSTOMER_PORTAL_BRAND_COLOR_SCHEME=scheme).test_client().get(LOGIN).text
    assert f'<meta name="color-scheme" content="{meta}">' in html
    if dark_link is None:
        assert "portal-dark.css" not in html
    else:
        assert dark_link in html


def test_the_app_refuses_to_start_with_an_unreadable_accent(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_BRAND_ACCENT_COLOR: #ffcc00"):
        make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", CUSTOMER_PORTAL_BRAND_ACCENT_COLOR="#ffcc00")


def test_the_stylesheets_are_served(branded: Callable[..., Flask]) -> None:
    client = branded().test_client()
    for name in ("portal-dark.css", "portal-brand.css"):
        response = client.get(f"/portal/static/{name}")
        assert response.status_code == 200
        assert response.mimetype == "text/css"
        response.close()
