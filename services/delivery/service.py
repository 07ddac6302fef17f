"""The e-mail delivery service behind `xsell deliver`: offer decisions in, e-mails out, each once.

The consumer (group `XSELL_DELIVERY_GROUP` on `offers`) renders every decision meant for the
e-mail channel and queues it in the outbox; offsets are committed only after the outbox
transaction, so a crash re-delivers and the idempotent insert (by decision id) keeps a re-delivered
or re-produced decision from being queued twice. A sender thread sends due outbox rows every tick,
whether or not new records arrive: a transient failure (server down, timeout, 4xx) is retried with
exponential back-off capped at `retry_max_s`, forever while the service runs; a permanent refusal
(5xx for the recipient or message) marks the row failed. After a send, one `email_sent` feedback
event per offer goes to `offer-feedback` (`bounced` after a permanent refusal), with deterministic
ids, and only once the broker acknowledged them is the row marked reported. Each claim of a row
carries a fencing token: a sender whose rows another sender took over (it fell silent, or its lease
ran out) cannot record their outcome; it logs the refused write and ends its pass.

`plan_emails` is the pure step (records in, outbox entries and skip reasons out) that unit tests
call without Kafka or SMTP.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate

from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy.exc import OperationalError

from services.delivery.outbox import Outbox, OutboxEntry, OutboxRow
from services.delivery.render import DEFAULT_CURRENCY, RenderError, render_offer_email
from services.delivery.smtp import DEFAULT_TIMEOUT_S, SmtpError, SmtpSession
from services.messaging import durable_producer, parse_record
from xsell.consumer import ConsumerLoop, Record
from xsell.metrics import DELIVERIES
from xsell.offers import Channel, FeedbackEvent, FeedbackType, OfferDecision, feedback_id_for
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPlan:
    """What one batch of decisions asks for: outbox entries, and why the other decisions send nothing."""

    entries: list[OutboxEntry]
    skipped: Counter[str]


@dataclass
class DeliveryStats:
    """Counters of one service run."""

    decisions: int = 0
    queued: int = 0
    duplicates: int = 0
    sent: int = 0
    failed: int = 0
    retries: int = 0
    feedback_events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def email_skip_reason(decision: OfferDecision) -> str | None:
    """Why this decision sends no e-mail (None when it should send one)."""
    if Channel.EMAIL not in decision.channels:
        return "no_email_channel"
    if not decision.offers:
        return "no_offers"
    if not decision.customer_id:
        return "anonymous"
    if not decision.customer_email:
        return "no_address"
    if not decision.marketing_consent:
        return "no_consent"
    return None


def plan_emails(
    records: Sequence[Record], settings: Settings, *, currency: str = DEFAULT_CURRENCY, now: float | None = None
) -> DeliveryPlan:
    """Render an outbox entry for each decision meant for e-mail; count the others by reason."""
    entries: dict[str, OutboxEntry] = {}
    skipped: Counter[str] = Counter()
    for record in records:
        decision = parse_record(record, OfferDecision, log, "malformed decision skipped")
        if decision is None:
            skipped["malformed_decision"] += 1
            continue
        if (reason := email_skip_reason(decision)) is not None:
            skipped[reason] += 1
            continue
        if decision.decision_id in entries:
            skipped["duplicate_in_batch"] += 1
            continue
        try:
            rendered = render_offer_email(decision, settings, currency=currency, now=now)
        except RenderError as error:  # a decision that cannot be an e-mail must not stop the others
            log.warning(
                "decision cannot be an e-mail", extra={"decision_id": decision.decision_id, "error": str(error)}
            )
            skipped["unrenderable"] += 1
            continue
        entries[decision.decision_id] = OutboxEntry(
            decision_id=rendered.decision_id,
            customer_id=rendered.customer_id,
            offer_ids=rendered.offer_ids,
            message=rendered.wire,
        )
    return DeliveryPlan(entries=list(entries.values()), skipped=skipped)


def feedback_for(row: OutboxRow) -> list[FeedbackEvent]:
    """One feedback event per offer of a finished row: `email_sent`, or `bounced` if it failed."""
    sent = row.status == "sent"
    kind = FeedbackType.EMAIL_SENT if sent else FeedbackType.BOUNCED
    occurred_at = datetime.fromtimestamp(row.finished_at or row.created_at, UTC)
    details = {"decision_id": row.decision_id}
    if not sent and row.last_error:
        details["error"] = row.last_error[:200]
    return [
        FeedbackEvent(
            feedback_id=feedback_id_for(offer_id, kind.value),
            type=kind,
            offer_id=offer_id,
            customer_id=row.customer_id,
            channel=Channel.EMAIL,
            occurred_at=occurred_at,
            details=details,
        )
        for offer_id in row.offer_ids
    ]


class DeliveryService:
    """Consumer of `offers` that queues e-mails in the outbox, plus the sender thread that sends them."""

    def __init__(
        self,
        settings: Settings,
        *,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        tick_s: float = 0.5,
        send_batch: int = 50,
        smtp_timeout_s: float = DEFAULT_TIMEOUT_S,
        currency: str = DEFAULT_CURRENCY,
        drain_timeout_s: float = 120.0,
        lease_s: float = 600.0,
    ) -> None:
        self.settings = settings
        self.drain_timeout_s = drain_timeout_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.tick_s = tick_s
        self.send_batch = send_batch
        self.smtp_timeout_s = smtp_timeout_s
        self.currency = currency
        self.outbox = Outbox.for_settings(settings)
        # this sender's name in the outbox's leases; it beats at least every message and every tick,
        # so silence for longer than two message timeouts means it is gone
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        self.stale_s = max(30.0, 2 * smtp_timeout_s + tick_s)
        self.stats = DeliveryStats()
        self.loop = ConsumerLoop(
            settings,
            group_id=settings.delivery_group,
            topics=[settings.topic_offers],
            handler=self.handle,
            client_id="xsell-delivery",
        )
        self._producer: KafkaProducer | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._sender_error: BaseException | None = None

    # -- consumer side ----------------------------------------------------------------------------
    def handle(self, records: list[Record]) -> None:
        """Render a batch and queue it in one outbox transaction (offsets are committed after it)."""
        plan = plan_emails(records, self.settings, currency=self.currency)
        queued = self.outbox.add(plan.entries, now=time.time()) if plan.entries else 0
        self.stats.decisions += len(records)
        self.stats.queued += queued
        self.stats.duplicates += len(plan.entries) - queued
        self.stats.skipped.update(plan.skipped)
        log.info(
            "decisions handled",
            extra={
                "records": len(records),
                "queued": queued,
                "duplicates": len(plan.entries) - queued,
                "skipped": dict(plan.skipped),
            },
        )
        if queued:
            self._wake.set()

    # -- sender side ------------------------------------------------------------------------------
    def send_due(self, now: float | None = None) -> int:
        """Send the outbox rows that are due, over one SMTP connection; return how many were sent."""
        rows = self.outbox.claim_due(
            time.time() if now is None else now,
            self.owner,
            limit=self.send_batch,
            lease_s=self.lease_s,
            stale_s=self.stale_s,
        )
        if not rows:
            return 0
        session = SmtpSession(self.settings, self.smtp_timeout_s)
        try:
            session.open()
        except SmtpError as error:
            for row in rows:
                self._retry(row, error)
            return 0
        sent = 0
        with session:
            for index, row in enumerate(rows):
                if self._stopping.is_set():
                    self._release(rows[index:])
                    break
                # the claim, then each row's outcome, write this sender's heartbeat: it beats before every message
                try:
                    session.send_bytes(dated_now(row.message))
                except SmtpError as error:
                    if not error.permanent:
                        if self._retry(row, error):
                            DELIVERIES.labels("retry").inc()
                        self._release(rows[index + 1 :])
                        break
                    if not self.outbox.mark_failed(row, str(error), time.time(), beat=self.owner):
                        self._fenced_off(row, "failed")
                        self._release(rows[index + 1 :])
                        break
                    self.stats.failed += 1
                    DELIVERIES.labels("failed").inc()
                    log.warning("e-mail refused for good", extra={"decision_id": row.decision_id, "error": str(error)})
                    continue
                if not self.outbox.mark_sent(row, time.time(), beat=self.owner):
                    self._fenced_off(row, "sent")
                    self._release(rows[index + 1 :])
                    break
                DELIVERIES.labels("sent").inc()
                sent += 1
                self.stats.sent += 1
                log.info(
                    "e-mail sent",
                    extra={
                        "decision_id": row.decision_id,
                        "customer_id": row.customer_id,
                        "offers": len(row.offer_ids),
                        "attempt": row.attempts + 1,
                    },
                )
        return sent

    def report_feedback(self) -> int:
        """Produce feedback for finished rows not reported yet; mark them once the broker acked. Return events."""
        if self._producer is None:
            return 0
        rows = self.outbox.unreported()
        if not rows:
            return 0
        events = [(row, event) for row in rows for event in feedback_for(row)]
        futures = [
            self._producer.send(
                self.settings.topic_offer_feedback, key=(event.offer_id or "").encode(), value=event.to_bytes()
            )
            for _, event in events
        ]
        self._producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # raises KafkaError: the rows stay unreported and are retried
        self.outbox.mark_reported([row.decision_id for row in rows])
        self.stats.feedback_events += len(events)
        return len(events)

    def _retry(self, row: OutboxRow, error: SmtpError) -> bool:
        """Schedule the row's next attempt; return whether its claim still held."""
        next_at = self.outbox.mark_retry(row, str(error), time.time(), self.retry_base_s, self.retry_max_s)
        if next_at is None:
            self._fenced_off(row, "retry")
            return False
        self.stats.retries += 1
        log.warning(
            "e-mail not sent, will retry",
            extra={
                "decision_id": row.decision_id,
                "attempt": row.attempts + 1,
                "retry_in_s": round(next_at - time.time(), 2),
                "error": str(error),
            },
        )
        return True

    def _release(self, rows: Sequence[OutboxRow]) -> None:
        """Hand back claimed rows that were not attempted (those another sender took over stay its)."""
        if not rows:
            return
        released = self.outbox.release(rows, time.time())
        if released < len(rows):
            log.warning(
                "outbox claims already taken over by another sender",
                extra={"owner": self.owner, "claims": len(rows), "taken_over": len(rows) - released},
            )

    def _fenced_off(self, row: OutboxRow, outcome: str) -> None:
        """Log an outcome the outbox refused: another sender claimed the row since (this sender was
        silent past `stale_s`, or its lease ran out), so that sender's claim decides the row."""
        log.warning(
            "outbox write fenced off: the e-mail was claimed by another sender",
            extra={
                "decision_id": row.decision_id,
                "owner": self.owner,
                "lease_token": row.lease_token,
                "outcome": outcome,
            },
        )

    def _sender_loop(self) -> None:
        """Every tick (or as soon as the consumer queued something): send due rows, report feedback."""
        try:
            while not self._stopping.is_set():
                try:
                    self.send_due()
                    self.report_feedback()
                except (OperationalError, KafkaError) as error:
                    log.error("sender pass failed, retrying next tick", extra={"error": str(error)})
                self._wake.wait(self.tick_s)
                self._wake.clear()
        except BaseException as error:
            self._sender_error = error  # an unexpected failure: stop the consumer too, re-raised by run()
            self.loop.stop()
            raise

    # -- lifecycle --------------------------------------------------------------------------------
    def run(self) -> DeliveryStats:
        """Run consumer and sender until SIGTERM/SIGINT (or `stop()`); return the run's counters."""
        self._producer = durable_producer(self.settings, "xsell-delivery-feedback")
        sender = threading.Thread(target=self._sender_loop, name="xsell-delivery-sender", daemon=True)
        sender.start()
        try:
            self.loop.run()
            if self.loop.until_caught_up:
                self._drain(timeout_s=self.drain_timeout_s)
        finally:
            self._stopping.set()
            self._wake.set()
            sender.join()
            self.outbox.retire(self.owner, time.time())
            try:
                self.report_feedback()
            except KafkaError as error:
                log.warning("feedback left for the next run", extra={"error": str(error)})
            self._producer.close()
            self._producer = None
        if self._sender_error is not None:
            raise RuntimeError("the delivery sender stopped unexpectedly") from self._sender_error
        log.info(
            "delivery stopped",
            extra={
                "sent": self.stats.sent,
                "failed": self.stats.failed,
                "queued": self.stats.queued,
                "outbox": self.outbox.counts(),
            },
        )
        return self.stats

    def _drain(self, timeout_s: float) -> None:
        """Run-once mode: wait until no e-mail is pending in the outbox (bounded), so that
        `--until-caught-up` means "everything consumed is also sent"."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.counts().get("pending", 0) and time.monotonic() < deadline and self._sender_error is None:
            self._wake.set()
            time.sleep(0.2)

    def stop(self) -> None:
        """Ask the service to stop after the current batch and the current message."""
        self._stopping.set()
        self._wake.set()
        self.loop.stop()


def dated_now(raw: bytes, now: float | None = None) -> bytes:
    """The stored message dated ``now`` (default: the current time), its other bytes as stored (the
    Message-ID stays, so retries are the same message): the Date line of the header block is
    replaced, or added last, without parsing and flattening the message again."""
    head, blank, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    date = b"Date: " + formatdate(now, usegmt=True).encode("ascii")
    at = next((i for i, line in enumerate(lines) if line[:5].lower() == b"date:"), None)
    if at is None:
        lines.append(date)
    else:
        end = at + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):  # a folded value's continuation lines
            end += 1
        lines[at:end] = [date]
    return b"\r\n".join(lines) + (blank or b"\r\n\r\n") + body
