"""The local server's access log, with the secrets that travel in query strings left out."""

from __future__ import annotations

import re
from typing import Any

from werkzeug.serving import WSGIRequestHandler

SECRET_PARAMETERS = re.compile(
    r"(?i)(?<=[?&])(t|token|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=[^&\s]*"
)
"""Query parameters that carry a credential: the e-mailed links' tokens (verification, approval,
denial), tokens, and the signatures of pre-signed object URLs."""


def redact(text: str) -> str:
    """``text`` (a request line or URL) with the value of every secret query parameter replaced."""
    return SECRET_PARAMETERS.sub(lambda found: f"{found.group(1)}=[redacted]", text)


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, whose log lines (request lines included) never hold a secret
    parameter's value: anyone who can read the log could otherwise approve an account with it."""

    def log(self, type: str, message: str, *args: Any) -> None:
        super().log(type, redact(message), *(redact(arg) if isinstance(arg, str) else arg for arg in args))
