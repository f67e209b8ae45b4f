"""gunicorn settings that keep portal link tokens out of the access log.

Run with ``gunicorn -c gunicorn_conf.py "yourapp:create_app()"``. Every field
of an access-log line (the request line, the path, the ``Referer``, any
``{header}i`` or ``{variable}e`` of your ``access_log_format``) goes through
the portal's own rule before it is written.
"""

from typing import Any

from gunicorn.glogging import Logger

from flask_customer_portal.log_redaction import redact_link_tokens


class PortalAccessLogger(Logger):
    """gunicorn's logger, with the token of every portal link replaced by
    ``[redacted]`` in the access log."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: redact_link_tokens(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }


logger_class = PortalAccessLogger
accesslog = "-"  # or a file; every line is redacted either way
