"""The revisions of the ``customer_portal`` Alembic branch (see
:mod:`flask_customer_portal.migrations`). Alembic reads these files by path;
nothing imports this package."""
