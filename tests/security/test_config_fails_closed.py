"""Configuration fails closed: every key that still signs cookies and links
is strong in live mode, payment credentials match the portal's mode, and
``flask portal check`` says what production still lacks."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import stripe
from dodopayments import DodoPayments
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import SECRET
from sqlalchemy import text

from flask_customer_portal import ConfigurationError, Customer, CustomerPortal
from flask_customer_portal.contrib.dodo import DodoBilling, DodoPaymentProvider
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage, metadata
from flask_customer_portal.contrib.stripe import StripePaymentProvider
from flask_customer_portal.mail import LogMailer
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import LinkPurpose
from flask_customer_portal.testing import TestPaymentProvider

STRONG = "k" * 16 + "0123456789abcdef0123"
OLD_STRONG = "old-" + SECRET

LIVE: dict[str, Any] = {
    "CUSTOMER_PORTAL_MODE": "live",
    "SECRET_KEY": STRONG,
    "SESSION_COOKIE_SECURE": True,
    "MAIL_SERVER": "smtp.example.com",
    "MAIL_PORT": 587,
    "MAIL_USE_TLS": True,
    "MAIL_PASSWORD": "mail-password-never-printed",
    "CUSTOMER_PORTAL_SINGLE_PROCESS": True,  # memory:// rate limits
}


class LiveProvider(TestPaymentProvider):
    """Moves real money, as far as the portal can tell."""

    is_test = False


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("fails_closed")
    app.config.update(
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'portal.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="https://shop.example.com",
    )
    app.config.update(config)
    SQLAlchemy(app)
    return app


def _refused(app: Flask, **kwargs: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        CustomerPortal(app, **kwargs)
    assert "customer_portal" not in app.extensions
    assert str(info.value).startswith(f"{info.value.key}: ")
    return info.value


@pytest.fixture
def cleanup() -> Iterator[list[Flask]]:
    apps: list[Flask] = []
    yield apps
    for app in apps:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


# -- item 8: SECRET_KEY_FALLBACKS --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fallbacks", "index"),
    [
        (["dev"], 0),
        ([OLD_STRONG, "changeme"], 1),
        ([OLD_STRONG, OLD_STRONG + "x", "s" * 31], 2),
        ([b"changeme"], 0),
    ],
)
def test_item8_weak_secret_key_fallback_is_refused_in_live_mode(
    tmp_path: Path, fallbacks: list[Any], index: int
) -> None:
    error = _refused(_app(tmp_path, **LIVE, SECRET_KEY_FALLBACKS=fallbacks), payments=LiveProvider())
    assert error.key == "SECRET_KEY_FALLBACKS"
    assert f"entry {index} " in str(error)
    weak = fallbacks[index]
    assert (weak.decode() if isinstance(weak, bytes) else weak) not in str(error)  # the value is never quoted


def test_strong_fallbacks_start_a_live_portal_and_still_verify_old_links(
    tmp_path: Path, cleanup: list[Flask]
) -> None:
    ava = Customer(id="cus_1", email="ava@example.com", name="Ava")
    old = _app(tmp_path, **{**LIVE, "SECRET_KEY": OLD_STRONG})
    CustomerPortal(old, payments=LiveProvider())
    cleanup.append(old)
    token, token_id = get_state(old).signer.make(LinkPurpose.SESSION_LINK, ava)

    (tmp_path / "new").mkdir()
    rotated = _app(tmp_path / "new", **LIVE, SECRET_KEY_FALLBACKS=[OLD_STRONG])
    CustomerPortal(rotated, payments=LiveProvider())
    cleanup.append(rotated)
    payload = get_state(rotated).signer.read(LinkPurpose.SESSION_LINK, token, max_age=60)
    assert (payload.customer_id, payload.token_id) == ("cus_1", token_id)


def test_item8_a_single_string_or_an_empty_entry_is_refused_in_every_mode(tmp_path: Path) -> None:
    # A string would be read as one key per character; an empty key signs nothing.
    for mode in ("test", "live"):
        for fallbacks in ("old-" + SECRET, [""], [None]):
            config = {**(LIVE if mode == "live" else {}), "SECRET_KEY_FALLBACKS": fallbacks}
            error = _refused(_app(tmp_path, **config), payments=LiveProvider() if mode == "live" else None)
            assert error.key == "SECRET_KEY_FALLBACKS"


def test_test_mode_keeps_accepting_weak_fallbacks(tmp_path: Path, cleanup: list[Flask]) -> None:
    app = _app(tmp_path, SECRET_KEY="dev", SECRET_KEY_FALLBACKS=["dev-old"])
    CustomerPortal(app)
    cleanup.append(app)
    assert not get_state(app).config.is_live


# -- item 9: credentials match the mode ------------------------------------------------------


def _stripe(secret_key: str, publishable_key: str) -> StripePaymentProvider:
    return StripePaymentProvider(stripe.StripeClient(secret_key), publishable_key=publishable_key)


@pytest.mark.parametrize(
    ("secret_key", "publishable_key"),
    [("sk_live_abc", "pk_live_abc"), ("rk_live_abc", "pk_live_abc")],
)
def test_item9_test_mode_refuses_live_stripe_keys(
    tmp_path: Path, secret_key: str, publishable_key: str
) -> None:
    error = _refused(_app(tmp_path), payments=_stripe(secret_key, publishable_key))
    assert error.key == "STRIPE_SECRET_KEY"
    assert "live credential" in str(error)
    assert secret_key not in str(error)


def test_item9_live_mode_refuses_stripe_test_keys(tmp_path: Path) -> None:
    error = _refused(_app(tmp_path, **LIVE), payments=_stripe("sk_test_abc", "pk_test_abc"))
    assert error.key == "STRIPE_SECRET_KEY"
    assert "test credential" in str(error)


@pytest.mark.parametrize(
    ("secret_key", "publishable_key", "key"),
    [
        ("sk_test_abc", "pk_live_abc", "STRIPE_SECRET_KEY"),
        ("sk_live_abc", "pk_test_abc", "STRIPE_SECRET_KEY"),
        ("rk_live_abc", "pk_test_abc", "STRIPE_SECRET_KEY"),
        ("sk_live_abc", "sk_live_abc", "STRIPE_PUBLISHABLE_KEY"),
        ("whsec_abc", "pk_live_abc", "STRIPE_SECRET_KEY"),
    ],
)
def test_item9_stripe_keys_of_two_modes_or_of_no_mode_are_refused(
    secret_key: str, publishable_key: str, key: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _stripe(secret_key, publishable_key)
    assert info.value.key == key
    assert secret_key not in str(info.value)


def test_item9_the_example_shop_refuses_live_stripe_keys_in_test_mode(tmp_path: Path) -> None:
    from example_app import create_app

    with pytest.raises(ConfigurationError) as info:
        create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
                "PORTAL_BACKEND": "stripe",
                "STRIPE_SECRET_KEY": "sk_live_shop",
                "STRIPE_PUBLISHABLE_KEY": "pk_live_shop",
            }
        )
    assert info.value.key == "STRIPE_SECRET_KEY"


@pytest.mark.parametrize(
    "billing",
    [
        lambda: DodoBilling.from_api_key("dodo_key"),
        lambda: DodoBilling(DodoPayments(bearer_token="dodo_key", environment="test_mode")),
        lambda: DodoBilling(DodoPayments(bearer_token="dodo_key", base_url="http://127.0.0.1:9")),
    ],
    ids=["from_api_key", "sdk_environment", "other_host"],
)
def test_item9_a_live_portal_over_dodo_test_environment_is_refused(tmp_path: Path, billing: Any) -> None:
    error = _refused(_app(tmp_path, **LIVE), payments=DodoPaymentProvider(billing()))
    assert error.key == "DODO_PAYMENTS_ENVIRONMENT"


@pytest.mark.parametrize(
    "billing",
    [
        lambda: DodoBilling.from_api_key("dodo_key", environment="live_mode"),
        lambda: DodoBilling(DodoPayments(bearer_token="dodo_key", environment="live_mode")),
        lambda: DodoBilling.from_api_key("dodo_key", environment="live_mode", base_url="http://127.0.0.1:9"),
    ],
    ids=["from_api_key", "sdk_environment", "live_behind_a_proxy"],
)
def test_item9_a_test_portal_over_dodo_live_environment_is_refused(tmp_path: Path, billing: Any) -> None:
    error = _refused(_app(tmp_path), payments=DodoPaymentProvider(billing()))
    assert error.key == "DODO_PAYMENTS_ENVIRONMENT"
    assert "live credential" in str(error)


def test_item9_dodo_environments_that_match_the_mode_start(tmp_path: Path, cleanup: list[Flask]) -> None:
    test_app = _app(tmp_path)
    CustomerPortal(test_app, payments=DodoPaymentProvider(DodoBilling.from_api_key("dodo_key")))
    cleanup.append(test_app)
    live_app = _app(tmp_path / "live", **LIVE)
    live = DodoBilling.from_api_key("dodo_key", environment="live_mode")
    CustomerPortal(live_app, payments=DodoPaymentProvider(live))
    cleanup.append(live_app)
    assert get_state(test_app).payments.is_test is True
    assert get_state(live_app).payments.is_test is False


def test_item9_a_merchant_provider_with_live_credentials_is_refused_in_test_mode(tmp_path: Path) -> None:
    assert _refused(_app(tmp_path), payments=LiveProvider()).key == "CUSTOMER_PORTAL_MODE"

    class AcmePay(LiveProvider):
        mode_setting = "ACME_PAY_API_KEY"

    assert _refused(_app(tmp_path), payments=AcmePay()).key == "ACME_PAY_API_KEY"

    class AcmeSandbox(TestPaymentProvider):
        mode_setting = "ACME_PAY_API_KEY"

    assert _refused(_app(tmp_path, **LIVE), payments=AcmeSandbox()).key == "ACME_PAY_API_KEY"


def test_item9_a_provider_that_does_not_say_its_mode_is_refused(tmp_path: Path) -> None:
    class Unsure(TestPaymentProvider):
        is_test = None  # type: ignore[assignment]

    assert _refused(_app(tmp_path), payments=Unsure()).key == "payments"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"SECRET_KEY": "dev"}, "SECRET_KEY"),
        ({"CUSTOMER_PORTAL_BASE_URL": "http://shop.example.com"}, "CUSTOMER_PORTAL_BASE_URL"),
        ({"MAIL_SERVER": None}, "MAIL_SERVER"),
        ({"MAIL_SUPPRESS_SEND": True}, "MAIL_SERVER"),
    ],
)
def test_live_mode_refuses_what_test_mode_allows(
    tmp_path: Path, cleanup: list[Flask], override: dict[str, Any], key: str
) -> None:
    assert _refused(_app(tmp_path, **{**LIVE, **override}), payments=LiveProvider()).key == key
    allowed = _app(tmp_path / "test", **override)
    CustomerPortal(allowed)  # test mode: weak secret, http and the log mailer are fine
    cleanup.append(allowed)


def test_live_mode_refuses_a_log_mailer_passed_in(tmp_path: Path) -> None:
    error = _refused(_app(tmp_path, **LIVE), payments=LiveProvider(), mailer=LogMailer())
    assert error.key == "MAIL_SERVER"


# -- item 9: flask portal check ---------------------------------------------------------------


def _checked(app: Flask) -> tuple[int, list[str]]:
    result = app.test_cli_runner().invoke(args=["portal", "check"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


def _line(lines: list[str], item: str) -> str:
    (found,) = [line for line in lines if line.split(maxsplit=1)[1].startswith(f"{item}:")]
    return found


def _live_app(tmp_path: Path, cleanup: list[Flask], **config: Any) -> Flask:
    app = _app(tmp_path, **{**LIVE, "SECRET_KEY_FALLBACKS": [OLD_STRONG], **config})
    CustomerPortal(app, payments=LiveProvider())
    cleanup.append(app)
    with app.app_context():
        storage = get_state(app).storage
        assert isinstance(storage, SQLAlchemyStorage)
        storage.create_all()
    return app


def test_item9_portal_check_passes_a_live_configuration(tmp_path: Path, cleanup: list[Flask]) -> None:
    app = _live_app(
        tmp_path,
        cleanup,
        CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI="memory://",
        CUSTOMER_PORTAL_SINGLE_PROCESS=True,
    )
    code, lines = _checked(app)
    assert code == 0, lines
    for item in (
        "CUSTOMER_PORTAL_MODE",
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS[0]",
        "CUSTOMER_PORTAL_BASE_URL",
        "mail transport",
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI",
        "session cookie",
        "database schema",
        "payment provider",
    ):
        assert _line(lines, item).startswith("OK "), lines
    assert "SMTP smtp.example.com:587 with STARTTLS" in _line(lines, "mail transport")
    assert "live credentials" in _line(lines, "payment provider")
    assert lines[-1] == f"0 failed, 0 to look at, {len(lines) - 1} OK."
    output = "\n".join(lines)
    for secret in (STRONG, OLD_STRONG, LIVE["MAIL_PASSWORD"]):
        assert secret not in output


def test_item9_portal_check_fails_a_test_configuration_item_by_item(
    tmp_path: Path, cleanup: list[Flask]
) -> None:
    app = _app(
        tmp_path,
        SECRET_KEY="changeme",
        SECRET_KEY_FALLBACKS=[OLD_STRONG, "dev"],
        CUSTOMER_PORTAL_BASE_URL="http://shop.example.com",
    )
    CustomerPortal(app)  # test mode: starts, with the log mailer and the test provider
    cleanup.append(app)  # and no tables were made
    code, lines = _checked(app)
    assert code == 1
    failed = {
        "CUSTOMER_PORTAL_MODE": '"test"',
        "SECRET_KEY": "shorter than 32 characters",
        "SECRET_KEY_FALLBACKS[1]": "shorter than 32 characters",
        "CUSTOMER_PORTAL_BASE_URL": "is not https://",
        "mail transport": "written to the log",
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": "CUSTOMER_PORTAL_SINGLE_PROCESS",
        "session cookie": "SESSION_COOKIE_SECURE = True",
        "database schema": "none of the",
        "payment provider": "TestPaymentProvider: test credentials",
    }
    for item, says in failed.items():
        line = _line(lines, item)
        assert line.startswith("FAIL "), line
        assert says in line, line
    assert _line(lines, "SECRET_KEY_FALLBACKS[0]").startswith("OK ")
    assert lines[-1].startswith(f"{len(failed)} failed, ")
    output = "\n".join(lines)
    for secret in ("changeme", OLD_STRONG, '"dev"', "'dev'"):
        assert secret not in output


def test_item9_live_mode_refuses_memory_rate_limits_of_several_workers(
    tmp_path: Path, cleanup: list[Flask]
) -> None:
    key = "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI"
    for uri in ("memory://", "MEMORY://"):
        with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_SINGLE_PROCESS") as refused:
            _live_app(tmp_path, cleanup, CUSTOMER_PORTAL_SINGLE_PROCESS=False, **{key: uri})
        assert refused.value.key == key
        assert "redis://" in str(refused.value)
    with pytest.raises(ConfigurationError) as refused:
        _live_app(tmp_path, cleanup, **{key: "redis.internal:6379"})
    assert refused.value.key == key
    # In test mode the app starts, and `flask portal check` names the item.
    app = _app(tmp_path)
    CustomerPortal(app)
    cleanup.append(app)
    _code, lines = _checked(app)
    assert _line(lines, key).startswith("FAIL ")
    assert "CUSTOMER_PORTAL_SINGLE_PROCESS" in _line(lines, key)


def test_item9_a_storage_uri_problem_never_shows_its_password(tmp_path: Path, cleanup: list[Flask]) -> None:
    key = "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI"
    for uri in (
        "nosuchstore://:uri-password@cache.internal:1/0",
        "redis+nosuch://:uri-password@cache.internal:1",
        "redis:/:uri-password@cache.internal:1",
    ):
        with pytest.raises(ConfigurationError) as refused:
            _live_app(tmp_path, cleanup, **{key: uri})
        assert refused.value.key == key
        # Nor in the traceback that start-up prints, causes included.
        printed = "".join(traceback.format_exception(refused.type, refused.value, refused.tb))
        assert "uri-password" not in printed
        assert "cache.internal" not in printed


def test_item9_portal_check_warns_about_smtp_in_clear_and_names_no_redis_password(
    tmp_path: Path, cleanup: list[Flask]
) -> None:
    app = _live_app(tmp_path, cleanup, MAIL_USE_TLS=False)
    state = get_state(app)  # (the redis package is not installed here: only the URI matters)
    state.config = replace(state.config, rate_limit_storage_uri="redis://:redis-password@cache.internal:6379")
    code, lines = _checked(app)
    assert code == 0, lines
    assert _line(lines, "mail transport").startswith("WARN ")
    assert _line(lines, "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI") == (
        "OK    CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI: redis://, shared by every process"
    )
    assert "redis-password" not in "\n".join(lines)
    assert lines[-1] == f"0 failed, 1 to look at, {len(lines) - 2} OK."


def test_item9_portal_check_fails_an_outdated_schema(tmp_path: Path, cleanup: list[Flask]) -> None:
    app = _live_app(tmp_path, cleanup, CUSTOMER_PORTAL_SINGLE_PROCESS=True)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_portal_links_expires_at"))
            connection.execute(text("ALTER TABLE portal_sessions DROP COLUMN user_agent"))
    code, lines = _checked(app)
    assert code == 1
    line = _line(lines, "database schema")
    assert line.startswith("FAIL ")
    assert "portal_sessions lacks the columns user_agent" in line
    assert "portal_links lacks the index ix_portal_links_expires_at" in line


def test_item9_schema_problems_on_each_database(store_app: Flask) -> None:
    from flask_customer_portal.production import schema_problems

    engine = store_app.extensions["sqlalchemy"].engine
    assert schema_problems(engine, metadata) == []
    expected = ["table portal_webhook_events is missing"]
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE portal_webhook_events"))
        if engine.dialect.name == "postgresql":  # SQLite cannot drop a constraint
            connection.execute(
                text(
                    "ALTER TABLE portal_charge_attempts "
                    "DROP CONSTRAINT uq_portal_charge_attempts_idempotency_key"
                )
            )
            expected.append("portal_charge_attempts lacks the unique constraint on idempotency_key")
    assert sorted(schema_problems(engine, metadata)) == sorted(expected)
