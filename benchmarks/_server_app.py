"""The app the server benchmark (``server.py``) serves: the portal as a host
app mounts it, plus a hello-world route and the bare hand-written dashboard
of benchmark 1. Configured by ``PORTAL_BENCH_*`` settings; the benchmark
creates the tables and demo data first."""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from benchmarks._bare import add_bare_views
from flask_customer_portal import CustomerPortal

HELLO_PATH = "/hello"


def create_app(settings: Mapping[str, str]) -> Flask:
    app = Flask("portal_bench_server")
    app.config.update(
        SECRET_KEY=settings["PORTAL_BENCH_SECRET_KEY"],
        SQLALCHEMY_DATABASE_URI=settings["PORTAL_BENCH_DATABASE_URL"],
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=settings["PORTAL_BENCH_BASE_URL"],
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        CUSTOMER_PORTAL_PHONE_DEFAULT_REGION="ID",
    )
    SQLAlchemy(app)
    CustomerPortal(app)
    add_bare_views(app)

    @app.get(HELLO_PATH)
    def hello() -> str:
        return "Hello, world!"

    return app


if os.environ.get("PORTAL_BENCH_DATABASE_URL"):  # gunicorn's workers import this module
    app = create_app(os.environ)
