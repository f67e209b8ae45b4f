"""Integrations that need optional dependencies, such as the SQLAlchemy store."""
