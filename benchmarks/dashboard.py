"""The portal's dashboard against a bare hand-written Flask + SQLAlchemy view
that renders the same data for the same customer (goal: ≤ 1.3× its latency)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import render_template_string
from sqlalchemy import func, select

from benchmarks._timing import measure
from flask_customer_portal.contrib.sqla import InvoiceModel, LicenseKeyModel, SubscriptionModel
from flask_customer_portal.extension import get_state
from tests.portal_fixtures import make_portal_app, sign_in

_BARE_TEMPLATE = """<!doctype html><html lang="en"><head><title>Overview</title></head><body><main>
<h1>Hello, {{ name }}</h1>
{% for s in subs %}<section><h2>{{ s.product_name }}</h2><p>{{ s.status }} {{ s.price_amount }} {{ s.currency }}
{{ s.current_period_end.strftime('%d %B %Y') }}</p></section>{% endfor %}
<p>{{ latest.number }} {{ latest.total }} {{ latest.currency }} ({{ count }} invoices)</p><p>{{ keys }} keys</p>
</main></body></html>"""


def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = make_portal_app(f"sqlite:///{Path(tmp) / 'bench.db'}", TESTING=False)
        db = app.extensions["sqlalchemy"]

        @app.get("/bare")
        def bare() -> str:
            customer_id = "cus_demo_ava"
            subs = db.session.scalars(
                select(SubscriptionModel).where(SubscriptionModel.customer_id == customer_id)
            ).all()
            latest = db.session.scalars(
                select(InvoiceModel)
                .where(InvoiceModel.customer_id == customer_id)
                .order_by(InvoiceModel.issued_at.desc())
                .limit(1)
            ).first()
            count = db.session.scalar(
                select(func.count()).select_from(InvoiceModel).where(InvoiceModel.customer_id == customer_id)
            )
            keys = db.session.scalar(
                select(func.count())
                .select_from(LicenseKeyModel)
                .where(LicenseKeyModel.customer_id == customer_id)
            )
            return render_template_string(
                _BARE_TEMPLATE, name="Ava Thompson", subs=subs, latest=latest, count=count, keys=keys
            )

        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        assert client.get("/portal/").status_code == 200
        assert client.get("/bare").status_code == 200
        portal_ms = measure(lambda: client.get("/portal/"))
        bare_ms = measure(lambda: client.get("/bare"))
        print("\n## Dashboard vs a bare Flask + SQLAlchemy view (SQLite, test client, median of 300)")
        print(
            f"portal dashboard: {portal_ms:.2f} ms   bare view: {bare_ms:.2f} ms   ratio: {portal_ms / bare_ms:.2f}x (goal ≤ 1.3x)"
        )
        get_state(app).shutdown()
        with app.app_context():
            db.engine.dispose()
