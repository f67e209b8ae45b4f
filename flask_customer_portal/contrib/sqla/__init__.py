"""The SQLAlchemy store: the portal's records in the merchant's own database."""

from .models import *  # noqa: F403
from .models import __all__ as __all__
