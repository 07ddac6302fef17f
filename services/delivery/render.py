"""Turn an offer decision into a ready-to-send e-mail: a text part, an HTML part and signed links.

Each offer gets its own signed click link (`/r/{token}`, action "click"), the message one signed
unsubscribe link (`/unsubscribe/{token}`, also in the `List-Unsubscribe` header, with
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` so a mail client may unsubscribe with one POST
to it, RFC 8058) and one open pixel (`/o/{token}.gif`, action "open"; the token's offer slot
carries the decision id, since an open is a fact about the message, not one offer). HTML is
autoescaped: product names and reasons are data and may hold `&`, quotes or markup. The Message-ID
is derived from the decision id, so a rendered message is the same message however often it is
retried. The parts of a "complete the set" bundle are one block: each part with its own link and
price, then the bundle's total and what its discount saves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from email import charset, policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import formatdate
from functools import cache, cached_property
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.links import sign_link
from xsell.offers import OfferDecision, OfferItem, offer_groups
from xsell.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_CURRENCY = "GBP"  # the shipped sample's currency; decisions do not carry one yet
CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "JPY": "¥"}
SECONDS_PER_DAY = 86_400
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058: the header value and the body a client POSTs


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, each header class built once: the standard one builds a new
    class (``type(...)``) for every header it parses, a tenth of the time a message takes to build."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


# SMTP line endings, and headers up to the SMTP line limit: a long List-Unsubscribe URL must stay one
# unencoded value (the default 78-column folding would RFC 2047-encode it and break it).
MAIL_POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HeaderClasses())


class _WirePolicy(policy.Compat32):
    """compat32 that writes a plain ASCII header line as it is (its own fold wraps every value in a
    `Header` to fold it, and the values here fit one line), and any other as `MAIL_POLICY` does
    (an address or subject that is not ASCII is encoded as the standard policy encodes it)."""

    def fold_binary(self, name: str, value: object) -> bytes:
        """The header line, CRLF-terminated."""
        line = f"{name}: {value}" if isinstance(value, str) else ""
        if line.isascii() and "\n" not in line and 0 < len(line) <= (self.max_line_length or 0):
            return f"{line}{self.linesep}".encode("ascii")
        return MAIL_POLICY.fold_binary(name, MAIL_POLICY.header_store_parse(name, str(value))[1])


# Messages are built with the compat32 API: it sets headers as given instead of parsing each into an
# object and folding it again, which cost two thirds of building a message with `MAIL_POLICY`. The
# wire format is the same: CRLF lines, headers up to the SMTP line limit, quoted-printable UTF-8
# bodies (in lines of 76 characters, as RFC 2045 asks).
WIRE_POLICY = _WirePolicy(linesep="\r\n", max_line_length=998)
UTF8_QP = charset.Charset("utf-8")
UTF8_QP.body_encoding = charset.QP


class RenderError(ValueError):
    """The decision cannot become an e-mail (no address, no customer, no offers)."""


@dataclass(frozen=True)
class OfferView:
    """What the templates show of one offer."""

    offer_id: str
    name: str
    price: str | None
    offer_type: str
    reason: str
    click_url: str


@dataclass(frozen=True)
class BlockView:
    """What the templates show of one place in the message: an offer, or a bundle's parts."""

    offers: tuple[OfferView, ...]
    reason: str
    bundle: bool = False
    total: str | None = None  # a bundle: the price of all its parts, after the discount
    saving: str | None = None  # a bundle with a discount: what it saves


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered message as it goes on the wire, with the ids it carries (for the outbox and feedback)."""

    decision_id: str
    customer_id: str
    offer_ids: tuple[str, ...]
    wire: bytes

    @cached_property
    def message(self) -> EmailMessage:
        """The message parsed as a mail client reads it (for callers that look inside it)."""
        parsed = BytesParser(policy=MAIL_POLICY).parsebytes(self.wire)
        assert isinstance(parsed, EmailMessage)
        return parsed


def format_price(amount: float, currency: str = DEFAULT_CURRENCY) -> str:
    """`£4.95` for known currencies, `4.95 CHF` otherwise; rounded half-up to cents."""
    value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{value:,}" if symbol else f"{value:,} {currency.upper()}"


def message_id_for(decision_id: str, mail_from: str) -> str:
    """Deterministic Message-ID of a decision's e-mail, in the sender's domain."""
    domain = mail_from.rsplit("@", 1)[-1].strip("> ") or "xsell.local"
    return f"<{decision_id}@{domain}>"


def subject_for(decision: OfferDecision) -> str:
    """Subject line: names no product and no person, only the order (a bundle is one pick)."""
    picks = len(offer_groups(decision.offers))
    if picks == 1:
        return f"Picked for you after order {decision.order_id}"
    return f"{picks} picks for you after order {decision.order_id}"


@cache
def _environment() -> Environment:
    """The Jinja2 environment (built on first use, not at import): HTML autoescaped, text not."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=lambda name: name is not None and name.endswith((".html.j2", ".html")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _offer_view(offer: OfferItem, click_url: str, currency: str) -> OfferView:
    return OfferView(
        offer_id=offer.offer_id,
        name=offer.name or f"Item {offer.product_id}",
        price=format_price(offer.price, currency) if offer.price is not None else None,
        offer_type=str(offer.offer_type),
        reason=offer.reason,
        click_url=click_url,
    )


def render_offer_email(
    decision: OfferDecision, settings: Settings, *, currency: str = DEFAULT_CURRENCY, now: float | None = None
) -> RenderedEmail:
    """Render `decision` as a multipart e-mail with signed links; raise `RenderError` if it cannot be one."""
    if not decision.customer_email:
        raise RenderError("decision has no e-mail address")
    if not decision.customer_id:
        raise RenderError("decision has no customer id")
    if not decision.offers:
        raise RenderError("decision has no offers")
    signed_at = time.time() if now is None else now
    ttl_s = settings.link_ttl_days * SECONDS_PER_DAY
    customer = decision.customer_id

    def token(action: str, offer_id: str | None) -> str:
        return sign_link(settings.link_secret, action, customer, offer_id, ttl_s, now=signed_at)

    views = {
        offer.offer_id: _offer_view(offer, f"{settings.base_url}/r/{token('click', offer.offer_id)}", currency)
        for offer in decision.offers
    }
    blocks = [
        BlockView(
            offers=tuple(views[offer.offer_id] for offer in group.offers),
            reason=group.offers[0].reason,
            bundle=group.is_bundle,
            total=format_price(group.total, currency) if group.total is not None else None,
            saving=format_price(group.saving, currency) if group.saving is not None else None,
        )
        for group in offer_groups(sorted(decision.offers, key=lambda item: item.rank))
    ]
    offers = [view for block in blocks for view in block.offers]
    unsubscribe_url = f"{settings.base_url}/unsubscribe/{token('unsubscribe', None)}"
    subject = subject_for(decision)
    context = {
        "subject": subject,
        "order_id": decision.order_id,
        "offers": offers,
        "blocks": blocks,
        "unsubscribe_url": unsubscribe_url,
        "pixel_url": f"{settings.base_url}/o/{token('open', decision.decision_id)}.gif",
    }
    environment = _environment()
    text = environment.get_template("offer_email.txt.j2").render(context)
    html = environment.get_template("offer_email.html.j2").render(context)

    headers = {
        "From": settings.mail_from,
        "To": decision.customer_email,
        "Subject": subject,
        "Date": formatdate(signed_at, usegmt=True),
        "Message-ID": message_id_for(decision.decision_id, settings.mail_from),
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": ONE_CLICK,
        "X-Xsell-Decision-Id": decision.decision_id,
    }
    return RenderedEmail(
        decision_id=decision.decision_id,
        customer_id=customer,
        offer_ids=tuple(offer.offer_id for offer in offers),
        wire=_wire(headers, text, html, boundary=f"=_xsell_{decision.decision_id}"),
    )


def _wire(headers: dict[str, str], text: str, html: str, boundary: str) -> bytes:
    """A multipart/alternative message (text, then HTML) as CRLF bytes. The ``boundary`` starts
    with "=_", which quoted-printable never writes, so no body can hold it; fixed, it makes a
    retried message the same bytes."""
    message = MIMEMultipart("alternative", boundary=boundary, policy=WIRE_POLICY)
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise RenderError(f"the {name} header may not hold a line break")
        message[name] = value
    for body, subtype in ((text, "plain"), (html, "html")):
        # MIMEText takes a Charset as well as a charset name (the stubs name only str)
        part = MIMEText(body, subtype, UTF8_QP, policy=WIRE_POLICY)  # type: ignore[arg-type]
        del part["MIME-Version"]  # once, at the top
        message.attach(part)
    return message.as_bytes(policy=WIRE_POLICY)
