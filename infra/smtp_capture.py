"""A local capture SMTP server (aiosmtpd) that stores every message it receives as an `.eml` file.

It listens on `XSELL_SMTP_HOST:XSELL_SMTP_PORT` (loopback only) and writes each message to
`XSELL_HOME/mail/<UTC time>-<Message-ID>.eml` (written to a temporary name, then renamed, so a
reader never sees half a message). It accepts every recipient and relays nothing: the demo and the
tests read what "was sent" from that folder. `start_capture` runs it in the background (pid file
`XSELL_HOME/smtp-capture.pid`, log `XSELL_HOME/smtp-capture.log`); `python -m infra.smtp_capture`
runs it in the foreground until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import logging
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from types import FrameType

import psutil

from infra.local_server import LocalServer, port_in_use
from xsell.logs import configure_logging
from xsell.settings import REPO_ROOT, Settings, load_settings

MODULE = "infra.smtp_capture"
UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
_sequence = itertools.count()
log = logging.getLogger(__name__)


class CaptureError(RuntimeError):
    """The capture server could not start; the message says why and what to do."""


@dataclass(frozen=True)
class CaptureStatus:
    """What `stack status` reports for the capture server."""

    running: bool
    pid: int | None
    address: str
    mail_dir: Path
    messages: int
    log_file: Path


def pid_file(settings: Settings) -> Path:
    """Pid file of the background capture server."""
    return settings.home / "smtp-capture.pid"


def log_file(settings: Settings) -> Path:
    """Log of the background capture server."""
    return settings.home / "smtp-capture.log"


def _server(settings: Settings) -> LocalServer:
    def owns(process: psutil.Process, _recorded: str) -> bool:
        command = process.cmdline()
        return MODULE in command and str(settings.mail_dir) in command

    return LocalServer("capture server", pid_file(settings), log_file(settings), CaptureError, owns)


def serves_locally(settings: Settings) -> bool:
    """True when the configured SMTP server is one the capture server can be: plain SMTP on loopback."""
    return _is_loopback(settings.smtp_host) and not settings.smtp_ssl and not settings.smtp_starttls


def eml_name(message_id: str | None, received_at: datetime) -> str:
    """`20110101T080000123456Z-<sanitised Message-ID>.eml`; files sort by arrival time."""
    stamp = received_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    ident = UNSAFE.sub("_", (message_id or "").strip().strip("<>"))[:120] or "no-message-id"
    return f"{stamp}-{next(_sequence):04d}-{ident}.eml"


class MailDirHandler:
    """aiosmtpd handler: accept every recipient and store each message as an .eml file in `mail_dir`."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        mail_dir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        """Store the message; the SMTP reply says where."""
        content: bytes = getattr(envelope, "original_content", None) or getattr(envelope, "content", b"") or b""
        if isinstance(content, str):
            content = content.encode()
        headers = BytesHeaderParser().parsebytes(content)
        path = self.store(content, headers.get("Message-ID"))
        log.info("message stored", extra={"file": path.name, "bytes": len(content)})
        return f"250 OK stored as {path.name}"

    def store(self, content: bytes, message_id: str | None) -> Path:
        """Write one message atomically; return its path."""
        path = self.mail_dir / eml_name(message_id, datetime.now(UTC))
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(content)
        os.replace(partial, path)
        return path


def running_pid(settings: Settings) -> int | None:
    """Pid of our capture server if it is alive (checked against its command line)."""
    return _server(settings).running_pid()


def start_capture(settings: Settings, timeout_s: float = 15.0) -> int:
    """Start the capture server in the background (idempotent) and wait until it accepts; return its pid."""
    if (pid := running_pid(settings)) is not None:
        return pid
    if not _is_loopback(settings.smtp_host):
        raise CaptureError(
            f"the capture server listens on loopback only, but XSELL_SMTP_HOST is {settings.smtp_host!r}; "
            "point XSELL_SMTP_HOST at 127.0.0.1 or use your real SMTP server"
        )
    server = _server(settings)
    server.ensure_port_free(settings.smtp_host, settings.smtp_port, "XSELL_SMTP_PORT")
    process = server.launch(
        [
            sys.executable,
            "-m",
            MODULE,
            "--host",
            settings.smtp_host,
            "--port",
            str(settings.smtp_port),
            "--mail-dir",
            str(settings.mail_dir),
        ],
        cwd=REPO_ROOT,
    )
    server.wait_ready(
        lambda: port_in_use(settings.smtp_host, settings.smtp_port),
        timeout_s,
        waiting_for="listen",
        interval_s=0.05,
        process=process,
        stop_on_timeout=True,
    )
    return process.pid


def stop_capture(settings: Settings, timeout_s: float = 10.0) -> bool:
    """Stop the background capture server (SIGTERM, then SIGKILL); True if one was running."""
    return _server(settings).stop(timeout_s)


def capture_status(settings: Settings) -> CaptureStatus:
    """Whether the capture server runs, where, and how many messages it stored."""
    pid = running_pid(settings)
    messages = len(list(settings.mail_dir.glob("*.eml"))) if settings.mail_dir.is_dir() else 0
    return CaptureStatus(
        running=pid is not None,
        pid=pid,
        address=f"{settings.smtp_host}:{settings.smtp_port}",
        mail_dir=settings.mail_dir,
        messages=messages,
        log_file=log_file(settings),
    )


def serve(host: str, port: int, mail_dir: Path) -> None:
    """Run the capture server in the foreground until SIGTERM or SIGINT."""
    from aiosmtpd.controller import Controller  # noqa: PLC0415  (imported only where it runs)

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every recipient address at INFO
    controller = Controller(MailDirHandler(mail_dir), hostname=host, port=port, enable_SMTPUTF8=True)
    controller.start()
    log.info("capturing SMTP", extra={"address": f"{host}:{port}", "mail_dir": str(mail_dir)})
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()
    log.info("capture server stopped", extra={"address": f"{host}:{port}"})


def main(argv: list[str] | None = None) -> None:
    """`python -m infra.smtp_capture [--host H] [--port P] [--mail-dir D]`; defaults from XSELL_* settings."""
    settings = load_settings()
    configure_logging(settings.log_level)
    parser = argparse.ArgumentParser(
        prog="python -m infra.smtp_capture",
        description="Local capture SMTP server: stores every received message as an .eml file; relays nothing.",
    )
    parser.add_argument("--host", default=settings.smtp_host, help="loopback address to listen on (XSELL_SMTP_HOST)")
    parser.add_argument("--port", type=int, default=settings.smtp_port, help="port (XSELL_SMTP_PORT)")
    parser.add_argument(
        "--mail-dir", type=Path, default=settings.mail_dir, help="where .eml files go (XSELL_HOME/mail)"
    )
    args = parser.parse_args(argv)
    if not _is_loopback(args.host):
        parser.error(f"the capture server listens on loopback only, not {args.host!r}")
    serve(args.host, args.port, args.mail_dir)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    main()
