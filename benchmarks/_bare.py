"""The baseline of the page benchmarks: the portal's dashboard and invoice
list written by hand as plain Flask + Flask-SQLAlchemy views.

They run on the same app, database, models and session cookie as the
portal, and show the same data in the same markup (layout, navigation,
sign-out form with a CSRF token, cards, table, pagination), so the
difference is the portal's own machinery. What a hand-written app would
typically leave out is left out: a server-side session record (the customer
id sits in the signed cookie, as Flask-Login keeps it), translations and
locale-aware formatting (English only, ``strftime`` and an f-string for
money), time zones, and the portal's security headers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, abort, render_template, request, session
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import generate_csrf
from jinja2 import ChoiceLoader, DictLoader
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from flask_customer_portal.contrib.sqla import (
    CustomerModel,
    InvoiceModel,
    LicenseKeyModel,
    SubscriptionModel,
)

SESSION_KEY = "bare_customer_id"
PER_PAGE = 25

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex, nofollow">
  <title>{% block title %}{% endblock %} · Acme Software</title>
  <link rel="stylesheet" href="/portal/static/portal.css">
</head>
<body class="portal">
  <a class="skip-link" href="#portal-main">Skip to content</a>
  <aside class="test-mode-banner" aria-label="Test mode">
    <strong>Test mode</strong> — no real money moves here. Use the test cards.
  </aside>
  <header class="portal-header">
    <div class="portal-brand">Acme Software</div>
    <form method="post" action="/bare/logout" class="portal-signout">
      <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
      <span class="portal-who">{{ customer.email }}</span>
      <button type="submit" class="button button-link">Sign out</button>
    </form>
  </header>
  <nav class="portal-nav" aria-label="Portal">
    <ul>
      {% for endpoint, path, label in nav %}
      <li><a href="{{ url_for(endpoint) if endpoint else path }}"{% if request.endpoint == endpoint %} aria-current="page"{% endif %}>{{ label }}</a></li>
      {% endfor %}
    </ul>
  </nav>
  <main id="portal-main" class="portal-main" tabindex="-1">
    {% block content %}{% endblock %}
  </main>
  <footer class="portal-footer"><p>Acme Software</p></footer>
</body>
</html>"""

_DASHBOARD = """{% extends "bare/layout.html" %}
{% block title %}Overview{% endblock %}
{% block content %}
<h1>Hello, {{ customer.name or customer.email }}</h1>
{% for s in on_hold %}
<section class="panel attention"><h2>Payment needed for {{ s.product_name }}</h2>
<p>Your last payment failed, so this subscription is on hold and will not renew until it is paid.</p></section>
{% endfor %}
<div class="cards">
  <section class="card" aria-labelledby="card-subscriptions">
    <h2 id="card-subscriptions">Subscriptions</h2>
    <p class="figure">{{ active|length }} active</p>
    {% if next_renewal %}
    {% set s = next_renewal %}
    <p>Next renewal: {{ s.product_name }} on {{ date(s.current_period_end) }}<br>
    {{ money(s.price_amount, s.price_currency) }} / {{ s.interval }}{% if s.payment_method %} · {{ s.payment_method.brand|title }} •••• {{ s.payment_method.last4 }}
    <span class="muted">expires {{ "%02d"|format(s.payment_method.exp_month) }}/{{ s.payment_method.exp_year }}</span>{% endif %}</p>
    {% endif %}
    <p><a href="/portal/subscriptions">Manage subscriptions</a></p>
  </section>
  <section class="card" aria-labelledby="card-invoices">
    <h2 id="card-invoices">Billing history</h2>
    {% if latest %}
    <p>Latest invoice: {{ latest.number }}<br>
      {{ date(latest.issued_at) }} · {{ money(latest.total, latest.currency) }} <span class="badge badge-{{ latest.status.value }}">{{ latest.status.value|capitalize }}</span></p>
    <p class="muted">{{ invoice_count }} invoices in total</p>
    {% endif %}
    <p><a href="{{ url_for('bare.invoices') }}">See all invoices</a></p>
  </section>
  <section class="card" aria-labelledby="card-keys">
    <h2 id="card-keys">Licence keys</h2>
    <p class="figure">{{ key_count }} keys</p>
    <p><a href="/portal/license-keys">See your keys</a></p>
  </section>
</div>
{% endblock %}"""

_INVOICES = """{% extends "bare/layout.html" %}
{% block title %}Billing history{% endblock %}
{% block content %}
<h1>Billing history</h1>
<p class="muted">{{ total }} invoices in total{% if pages > 1 %} · Page {{ page }} of {{ pages }}{% endif %}</p>
<table class="responsive invoice-list">
  <thead>
    <tr>
      <th scope="col">Date issued</th>
      <th scope="col">Invoice number</th>
      <th scope="col">Description</th>
      <th scope="col" class="num">Amount</th>
      <th scope="col">Status</th>
      <th scope="col">PDF</th>
    </tr>
  </thead>
  <tbody>
    {% for invoice in invoices %}
    <tr>
      <td data-label="Date issued">{{ date(invoice.issued_at) }}</td>
      <th scope="row" data-label="Invoice number"><a href="{{ url_for('bare.invoice', invoice_id=invoice.id) }}">{{ invoice.number }}</a></th>
      <td data-label="Description">{{ invoice.description }}</td>
      <td data-label="Amount" class="num">{{ money(invoice.total, invoice.currency) }}</td>
      <td data-label="Status"><span class="badge badge-{{ invoice.status.value }}">{{ invoice.status.value|capitalize }}</span></td>
      <td data-label="PDF"><a href="{{ url_for('bare.invoice', invoice_id=invoice.id, format='pdf') }}" type="application/pdf" aria-label="Download invoice {{ invoice.number }} as PDF">PDF</a></td>
    </tr>
    {% endfor %}
  </tbody>
</table>
{% if pages > 1 %}
<nav class="pagination" aria-label="Billing history pages"><ul>
  {% if page > 1 %}<li><a href="{{ url_for('bare.invoices', page=page - 1) }}" rel="prev">Previous</a></li>{% endif %}
  {% for number in range([1, page - 2]|max, [pages, page + 2]|min + 1) %}
  <li><a href="{{ url_for('bare.invoices', page=number) }}"{% if number == page %} aria-current="page"{% endif %}>{{ number }}</a></li>
  {% endfor %}
  {% if page < pages %}<li><a href="{{ url_for('bare.invoices', page=page + 1) }}" rel="next">Next</a></li>{% endif %}
</ul></nav>
{% endif %}
{% endblock %}"""

#: (endpoint, or a path for the pages the baseline does not have; label)
_NAV = (
    ("bare.dashboard", None, "Overview"),
    (None, "/portal/subscriptions", "Subscriptions"),
    ("bare.invoices", None, "Billing history"),
    (None, "/portal/license-keys", "Licence keys"),
    (None, "/portal/profile", "Profile"),
)

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def _money(amount: int, currency: str) -> str:
    symbol = _SYMBOLS.get(currency)
    if symbol is None:
        return f"{currency} {amount / 100:,.2f}"
    return f"{symbol}{amount / 100:,.2f}"


def _date(value: datetime) -> str:
    return f"{value:%B} {value.day}, {value.year}"


def _customer_id_from_cookie() -> str | None:
    customer_id = session.get(SESSION_KEY)
    return customer_id if isinstance(customer_id, str) else None


_INVOICE = """{% extends "bare/layout.html" %}
{% block title %}Invoice {{ invoice.number }}{% endblock %}
{% block content %}
<h1>Invoice {{ invoice.number }}</h1>
<p>{{ date(invoice.issued_at) }} · {{ invoice.description }} · {{ money(invoice.total, invoice.currency) }}</p>
{% endblock %}"""


def add_bare_views(
    app: Flask,
    url_prefix: str = "/bare",
    *,
    current_customer_id: Callable[[], str | None] = _customer_id_from_cookie,
) -> None:
    """Mount the hand-written views on ``app``.

    ``current_customer_id`` says who is signed in; by default the id that
    ``/bare/sign-in/<id>`` put in the session cookie.
    """
    db: SQLAlchemy = app.extensions["sqlalchemy"]
    bare = Blueprint("bare", __name__)
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader(
                {
                    "bare/layout.html": _LAYOUT,
                    "bare/dashboard.html": _DASHBOARD,
                    "bare/invoices.html": _INVOICES,
                    "bare/invoice.html": _INVOICE,
                }
            ),
            *([app.jinja_env.loader] if app.jinja_env.loader is not None else []),
        ]
    )

    def signed_in_customer() -> CustomerModel:
        customer_id = current_customer_id()
        customer = None if customer_id is None else db.session.get(CustomerModel, customer_id)
        if customer is None:
            abort(401)
        return customer

    def context(customer: CustomerModel) -> dict[str, Any]:
        return {
            "customer": customer,
            "nav": _NAV,
            "csrf_token": generate_csrf,
            "money": _money,
            "date": _date,
        }

    @bare.get("/sign-in/<customer_id>")
    def sign_in(customer_id: str) -> str:
        session[SESSION_KEY] = customer_id
        return "signed in"

    @bare.get("/")
    def dashboard() -> str:
        customer = signed_in_customer()
        subscriptions = db.session.scalars(
            select(SubscriptionModel)
            .where(SubscriptionModel.customer_id == customer.id)
            .options(joinedload(SubscriptionModel.payment_method))
        ).all()
        active = [s for s in subscriptions if s.status.value == "active"]
        renewing = sorted(
            (s for s in active if not s.cancel_at_period_end), key=lambda s: s.current_period_end
        )
        latest = db.session.scalars(
            select(InvoiceModel)
            .where(InvoiceModel.customer_id == customer.id)
            .order_by(InvoiceModel.issued_at.desc(), InvoiceModel.id.desc())
            .limit(1)
        ).first()
        invoice_count = db.session.scalar(
            select(func.count()).select_from(InvoiceModel).where(InvoiceModel.customer_id == customer.id)
        )
        key_count = db.session.scalar(
            select(func.count())
            .select_from(LicenseKeyModel)
            .where(LicenseKeyModel.customer_id == customer.id)
        )
        return render_template(
            "bare/dashboard.html",
            **context(customer),
            on_hold=[s for s in subscriptions if s.status.value == "on_hold"],
            active=active,
            next_renewal=renewing[0] if renewing else None,
            latest=latest,
            invoice_count=invoice_count,
            key_count=key_count,
        )

    @bare.get("/invoices")
    def invoices() -> str:
        customer = signed_in_customer()
        page = request.args.get("page", 1, type=int)
        total = db.session.scalar(
            select(func.count()).select_from(InvoiceModel).where(InvoiceModel.customer_id == customer.id)
        )
        pages = max(1, -(-(total or 0) // PER_PAGE))
        if not 1 <= page <= pages:
            abort(404)
        rows = db.session.scalars(
            select(InvoiceModel)
            .where(InvoiceModel.customer_id == customer.id)
            .order_by(InvoiceModel.issued_at.desc(), InvoiceModel.id.desc())
            .limit(PER_PAGE)
            .offset((page - 1) * PER_PAGE)
        ).all()
        return render_template(
            "bare/invoices.html", **context(customer), invoices=rows, total=total, page=page, pages=pages
        )

    @bare.get("/invoices/<invoice_id>")
    def invoice(invoice_id: str) -> str:
        customer = signed_in_customer()
        found = db.session.scalars(
            select(InvoiceModel).where(InvoiceModel.id == invoice_id, InvoiceModel.customer_id == customer.id)
        ).first()
        if found is None or request.args.get("format") not in (None, "html"):
            abort(404)  # the baseline makes no PDFs
        return render_template("bare/invoice.html", **context(customer), invoice=found)

    app.register_blueprint(bare, url_prefix=url_prefix)
