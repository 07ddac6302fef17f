"""Send e-mails through the configured SMTP server: plain, STARTTLS or implicit TLS, optional login.

`SmtpSession` keeps one connection open for a run of messages. Every failure surfaces as
`SmtpError` with a message that names the server and what to check, and says whether it is
`permanent` (the server refused this message or recipient for good: 5xx on RCPT or DATA) or worth
retrying (unreachable server, timeouts, 4xx, login or sender problems, which are configuration,
not the shopper's fault). Error texts never include the recipient's address.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from email import message_from_bytes
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from types import TracebackType

from services.delivery.render import MAIL_POLICY
from xsell.settings import Settings

DEFAULT_TIMEOUT_S = 10.0
ADDRESS = re.compile(r"[^\s<>@\"']+@[^\s<>\"']+")


class SmtpError(RuntimeError):
    """Sending failed; `permanent` says whether retrying the same message is pointless."""

    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class SmtpSession:
    """One connection to `settings.smtp_host:smtp_port` (a context manager); `send` one message at a time."""

    def __init__(self, settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.address = f"{settings.smtp_host}:{settings.smtp_port}"
        self._client: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSession:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect, secure the connection if configured and log in if a user is set; raise `SmtpError`."""
        settings = self.settings
        mode = "SSL" if settings.smtp_ssl else "STARTTLS" if settings.smtp_starttls else "plain"
        try:
            if settings.smtp_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.smtp_host, settings.smtp_port, timeout=self.timeout_s, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=self.timeout_s)
            self._client = client
            client.ehlo()
            if settings.smtp_starttls and not settings.smtp_ssl:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.smtp_user:
                client.login(settings.smtp_user, settings.smtp_password or "")
        except smtplib.SMTPAuthenticationError as error:
            self.close()
            raise SmtpError(
                f"SMTP server {self.address} refused the login of XSELL_SMTP_USER: {error.smtp_code} "
                f"{_text(error.smtp_error)}; check XSELL_SMTP_USER / XSELL_SMTP_PASSWORD",
                code=error.smtp_code,
            ) from error
        except smtplib.SMTPNotSupportedError as error:
            self.close()
            raise SmtpError(
                f"SMTP server {self.address} does not support {mode} or AUTH: {error}; "
                "check XSELL_SMTP_STARTTLS / XSELL_SMTP_SSL / XSELL_SMTP_USER"
            ) from error
        except (smtplib.SMTPException, ssl.SSLError, OSError) as error:
            self.close()
            raise SmtpError(
                f"cannot reach SMTP server {self.address} ({mode}): {_text(error) or type(error).__name__}; "
                "is it running (`python -m infra.smtp_capture` locally)? Check XSELL_SMTP_HOST / XSELL_SMTP_PORT"
            ) from error

    def send(self, message: EmailMessage) -> None:
        """Hand `message` to the server; raise `SmtpError` (permanent for 5xx on recipient or data)."""
        self._hand_over(lambda client: client.send_message(message))

    def send_bytes(self, raw: bytes) -> None:
        """Hand a flattened message (CRLF lines, as `MAIL_POLICY` writes it) to the server as it
        is, the envelope read from its From and To headers alone: parsing and flattening a message
        again costs more than building it. A message whose addresses are not plain ASCII (SMTPUTF8)
        or that has a Bcc goes through `send`, parsed with `MAIL_POLICY`. Raises as `send` does."""
        envelope = _ascii_envelope(raw)
        if envelope is None:
            message = message_from_bytes(raw, policy=MAIL_POLICY)
            assert isinstance(message, EmailMessage)
            self.send(message)
            return
        sender, recipients = envelope
        self._hand_over(lambda client: client.sendmail(sender, recipients, raw))

    def _hand_over(self, deliver: Callable[[smtplib.SMTP], dict[str, tuple[int, bytes]]]) -> None:
        """Run ``deliver`` on the open connection; every failure becomes an `SmtpError`."""
        if self._client is None:
            raise SmtpError(f"SMTP session to {self.address} is not open")
        try:
            refused = deliver(self._client)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            permanent = bool(codes) and all(code >= 500 for code in codes)
            raise SmtpError(
                f"SMTP server {self.address} refused the recipient: {codes}",
                permanent=permanent,
                code=codes[0] if codes else None,
            ) from error
        except smtplib.SMTPSenderRefused as error:
            raise SmtpError(
                f"SMTP server {self.address} refused the sender XSELL_MAIL_FROM: {error.smtp_code} "
                f"{_text(error.smtp_error)}",
                code=error.smtp_code,
            ) from error
        except smtplib.SMTPDataError as error:
            raise SmtpError(
                f"SMTP server {self.address} refused the message: {error.smtp_code} {_text(error.smtp_error)}",
                permanent=error.smtp_code >= 500,
                code=error.smtp_code,
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise SmtpError(
                f"sending through SMTP server {self.address} failed: {_text(error) or type(error).__name__}"
            ) from error
        if refused:
            codes = [code for code, _ in refused.values()]
            raise SmtpError(f"SMTP server {self.address} refused a recipient: {codes}", permanent=True, code=codes[0])

    def close(self) -> None:
        """Say QUIT if the connection is alive, and drop it."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def send_email(settings: Settings, message: EmailMessage, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Send one message on its own connection; raise `SmtpError` with a clear reason."""
    with SmtpSession(settings, timeout_s) as session:
        session.send(message)


def _ascii_envelope(raw: bytes) -> tuple[str, list[str]] | None:
    """The envelope sender (Sender, else From) and recipients (To, Cc, Bcc) of a flattened
    message, read from its header block alone; None when a header of theirs is not plain ASCII (an
    encoded word or 8-bit bytes: an international address, for `send` and SMTPUTF8) or when the
    message names no sender or no recipient (for `send` and its error)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    values = {name: [str(v) for v in headers.get_all(name, [])] for name in ("Sender", "From", "To", "Cc", "Bcc")}
    if any("=?" in v or not v.isascii() for vs in values.values() for v in vs):
        return None
    senders = [address for _, address in getaddresses(values["Sender"] or values["From"]) if address]
    recipients = [address for _, address in getaddresses(values["To"] + values["Cc"] + values["Bcc"]) if address]
    if not senders or not recipients or values["Bcc"]:  # a Bcc header must not be sent: `send` strips it
        return None
    return senders[0], recipients


def _text(value: object) -> str:
    """A server reply or error as text, with any e-mail address in it redacted (it may be the shopper's)."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ADDRESS.sub("<redacted>", text)
