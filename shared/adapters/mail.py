"""Outgoing e-mail: SMTP when a host is set, otherwise files in the data dir's outbox."""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from shared.core.durable import write_atomically
from shared.core.errors import Unavailable


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> None: ...


MAX_LINE = 998
"""The longest line SMTP carries as it is (RFC 5322), without the line break."""


def _transfer_encoding(body: str) -> str:
    """How the body travels: as it is (7bit) when it is ASCII in lines SMTP carries whole, so that
    a link reads the same in the raw message as in a mail reader; base64 otherwise. Never
    quoted-printable, whose soft line breaks (``=`` at the end of a line, ``=3D`` for ``=``) would
    cut a long link in two for whoever copies it from the source."""
    if body.isascii() and all(len(line) <= MAX_LINE for line in body.splitlines()):
        return "7bit"
    return "base64"


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4()}@workbench>"
    message.set_content(body, cte=_transfer_encoding(body))
    return message


class Outbox:
    """Writes each message as an ``.eml`` file, renamed into place whole."""

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        message = _message(self.sender, to, subject, body)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        write_atomically(self.directory / name, message.as_bytes(), prefix=".")

    def messages(self) -> list[EmailMessage]:
        """Every message in the outbox, oldest first."""
        from email import message_from_bytes, policy

        found = []
        for path in sorted(self.directory.glob("*.eml")):
            parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found


class SmtpMailer:
    """Sends through an SMTP relay."""

    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host = host
        self.port = port
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        import smtplib

        try:
            with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                smtp.send_message(_message(self.sender, to, subject, body))
        except (OSError, smtplib.SMTPException) as error:
            raise Unavailable(f"mail server {self.host}:{self.port} unavailable: {error}") from error
