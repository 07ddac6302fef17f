"""Rendering: autoescaped HTML, a faithful text part, signed links that verify, formatted prices."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser

import pytest

from services.delivery.render import (
    RenderError,
    format_price,
    message_id_for,
    render_offer_email,
)
from services.links import verify_link
from xsell.offers import Channel, OfferDecision, OfferItem, OfferType
from xsell.settings import Settings, load_settings

NASTY_NAME = 'SET OF 3 "CAKE" TINS & MORE <b>'
NOW = 1_700_000_000.0


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(home=tmp_path, public_base_url="https://shop.example", link_secret="s3cret", link_ttl_days=30)


def decision(**overrides: object) -> OfferDecision:
    fields: dict[str, object] = {
        "decision_id": "dec-1",
        "event_id": "evt-1",
        "order_id": "536365",
        "customer_id": "17850",
        "customer_email": "shopper@example.org",
        "marketing_consent": True,
        "occurred_at": datetime(2011, 1, 1, tzinfo=UTC),
        "decided_at": datetime(2011, 1, 1, 0, 0, 1, tzinfo=UTC),
        "model_version": "3",
        "channels": (Channel.EMAIL,),
        "offers": (
            OfferItem(
                offer_id="off-2",
                product_id="P2",
                name="JUMBO BAG",
                price=1234.5,
                offer_type=OfferType.UP_SELL,
                rank=2,
                score=0.4,
                reason="Upgrade to the JUMBO BAG",
            ),
            OfferItem(
                offer_id="off-1",
                product_id="P1",
                name=NASTY_NAME,
                price=4.95,
                offer_type=OfferType.CROSS_SELL,
                rank=1,
                score=0.9,
                reason="Goes well with your TEA & COFFEE <SET>",
            ),
        ),
    }
    fields.update(overrides)
    return OfferDecision(**fields)  # type: ignore[arg-type]


class Links(HTMLParser):
    """Collect every href and img src of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")


def parts(settings: Settings, **overrides: object) -> tuple[str, str]:
    """The text and HTML parts as a mail client shows them (lines end in a newline, not CRLF)."""
    message = render_offer_email(decision(**overrides), settings, now=NOW).message
    text, html = message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def test_html_escapes_names_and_reasons_while_text_keeps_them_verbatim(settings: Settings) -> None:
    text, html = parts(settings)
    assert "SET OF 3 &#34;CAKE&#34; TINS &amp; MORE &lt;b&gt;" in html
    assert "Goes well with your TEA &amp; COFFEE &lt;SET&gt;" in html
    assert "<b>" not in html and "<SET>" not in html
    assert NASTY_NAME in text
    assert "Goes well with your TEA & COFFEE <SET>" in text
    assert "Upgrade to the JUMBO BAG" in text and "Upgrade to the JUMBO BAG" in html
    assert "&amp;" not in text


def test_offers_appear_in_rank_order_with_formatted_prices(settings: Settings) -> None:
    text, html = parts(settings)
    assert text.index(NASTY_NAME) < text.index("JUMBO BAG")
    for part in (text, html):
        assert "£4.95" in part and "£1,234.50" in part


def test_every_link_is_signed_and_verifies(settings: Settings) -> None:
    rendered = render_offer_email(decision(), settings, now=NOW)
    message = rendered.message
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    links = Links()
    links.feed(html)

    clicks = [href for href in links.hrefs if href.startswith("https://shop.example/r/")]
    claims = [verify_link("s3cret", href.rsplit("/", 1)[1], "click", now=NOW + 60) for href in clicks]
    assert [c.offer_id for c in claims] == ["off-1", "off-1", "off-2", "off-2"]  # name link and button per offer
    assert {c.customer_id for c in claims} == {"17850"}
    assert rendered.offer_ids == ("off-1", "off-2")
    assert all(href in text for href in clicks)

    [unsubscribe] = [href for href in links.hrefs if href.startswith("https://shop.example/unsubscribe/")]
    claim = verify_link("s3cret", unsubscribe.rsplit("/", 1)[1], "unsubscribe", now=NOW + 60)
    assert (claim.customer_id, claim.offer_id) == ("17850", None)
    assert unsubscribe in text
    assert message["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058 one-click

    [pixel] = links.images
    assert pixel.startswith("https://shop.example/o/") and pixel.endswith(".gif")
    opened = verify_link(
        "s3cret", pixel.removeprefix("https://shop.example/o/").removesuffix(".gif"), "open", now=NOW + 60
    )
    assert (opened.customer_id, opened.offer_id) == ("17850", "dec-1")

    expires = claim.expires_at
    assert expires == int(NOW + 30 * 86_400)


def test_headers_name_no_product_and_message_id_is_deterministic(settings: Settings) -> None:
    message = render_offer_email(decision(), settings, now=NOW).message
    assert message["To"] == "shopper@example.org"
    assert message["From"] == settings.mail_from
    assert message["Message-ID"] == message_id_for("dec-1", settings.mail_from) == "<dec-1@xsell.example>"
    assert "536365" in message["Subject"] and "CAKE" not in message["Subject"]
    assert message.is_multipart()
    again = render_offer_email(decision(), settings, now=NOW + 5).message
    assert again["Message-ID"] == message["Message-ID"]


def test_a_render_is_the_same_bytes_every_time(settings: Settings) -> None:
    first, again = (render_offer_email(decision(), settings, now=NOW).wire for _ in range(2))
    assert first == again  # a retried decision is the same message, boundary included
    assert b'boundary="=_xsell_dec-1"' in first  # "=_" never occurs in quoted-printable bodies
    assert all(len(line) <= 998 for line in first.split(b"\r\n"))  # the SMTP line limit


def test_a_header_value_with_a_line_break_is_refused(settings: Settings) -> None:
    with pytest.raises(RenderError, match="To header may not hold a line break"):
        render_offer_email(decision(customer_email="a@example.org\r\nBcc: all@example.org"), settings, now=NOW)


@pytest.mark.parametrize("base_url", ["https://shop.example", ""])
def test_one_click_unsubscribe_headers_point_at_the_configured_base_url(tmp_path, base_url: str) -> None:
    settings = load_settings(home=tmp_path, public_base_url=base_url, link_secret="s3cret")
    wire = render_offer_email(decision(), settings, now=NOW).wire
    sent = BytesParser(policy=policy.default).parsebytes(wire)  # as the mail client reads it

    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [url] = re.fullmatch(r"<([^<>\s]+)>", sent["List-Unsubscribe"]).groups()  # type: ignore[union-attr]
    assert url.startswith(f"{settings.base_url}/unsubscribe/")
    local = f"http://{settings.api_host}:{settings.api_port}/"
    assert url.startswith("https://") if base_url else url.startswith(local)
    assert verify_link("s3cret", url.rsplit("/", 1)[1], "unsubscribe", now=NOW + 60).customer_id == "17850"


def test_missing_name_or_price_still_renders(settings: Settings) -> None:
    bare = OfferItem(
        offer_id="off-9",
        product_id="85123A",
        offer_type=OfferType.CROSS_SELL,
        rank=1,
        score=0.1,
        reason="Goes well with your MUG",
    )
    text, html = parts(settings, offers=(bare,))
    assert "Item 85123A" in text and "Item 85123A" in html
    assert "£" not in text


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"customer_email": None}, "no e-mail address"),
        ({"customer_id": None}, "no customer id"),
        ({"offers": ()}, "no offers"),
    ],
)
def test_decisions_that_cannot_be_an_email_are_refused(settings: Settings, overrides: dict, problem: str) -> None:
    with pytest.raises(RenderError, match=problem):
        render_offer_email(decision(**overrides), settings, now=NOW)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (4.95, "GBP", "£4.95"),
        (2.675, "GBP", "£2.68"),  # half-up on the decimal value, not the binary float
        (1234.5, "eur", "€1,234.50"),
        (10, "USD", "$10.00"),
        (10, "CHF", "10.00 CHF"),
    ],
)
def test_format_price(amount: float, currency: str, expected: str) -> None:
    assert format_price(amount, currency) == expected


def bundle_part(offer_id: str, name: str, price: float, rank: int) -> OfferItem:
    return OfferItem(
        offer_id=offer_id,
        product_id=offer_id.upper(),
        name=name,
        price=price,
        offer_type=OfferType.CROSS_SELL,
        rank=rank,
        score=0.5,
        reason="Complete the set with TEAPOT: CUP + SAUCER",
        bundle_id="bundle-1",
        bundle_price=5.4,  # 2.50 + 3.50 less 10 %
    )


def test_a_bundle_is_one_block_with_its_total_saving_and_a_link_per_part(settings: Settings) -> None:
    single = decision().offers[1]  # rank 1
    offers = (single, bundle_part("cup", "CUP", 2.5, 2), bundle_part("saucer", "SAUCER", 3.5, 3))
    rendered = render_offer_email(decision(offers=offers), settings, now=NOW)
    text = rendered.message.get_body(("plain",)).get_content()
    html = rendered.message.get_body(("html",)).get_content()

    assert "2. Complete the set - all 2 for £5.40 (you save £0.60)" in text
    assert text.count("Complete the set with TEAPOT: CUP + SAUCER") == 1  # the reason once, for the block
    assert "   - CUP - £2.50" in text and "   - SAUCER - £3.50" in text
    assert "\n3. " not in text  # two places: the single offer and the set
    assert "Complete the set</p>" in html and "<strong>£5.40</strong>" in html and "you save £0.60" in html
    assert rendered.message["Subject"] == "2 picks for you after order 536365"
    assert text.index(NASTY_NAME) < text.index("CUP") < text.index("SAUCER")

    links = Links()
    links.feed(html)
    clicks = [href for href in links.hrefs if href.startswith("https://shop.example/r/")]
    claims = [verify_link("s3cret", href.rsplit("/", 1)[1], "click", now=NOW + 60).offer_id for href in clicks]
    assert claims == ["off-1", "off-1", "cup", "saucer"]  # each part clicks through on its own offer
    assert rendered.offer_ids == ("off-1", "cup", "saucer")


def test_a_bundle_without_a_discount_shows_its_total_only(settings: Settings) -> None:
    parts_ = tuple(
        p.model_copy(update={"bundle_price": 6.0})
        for p in (bundle_part("cup", "CUP", 2.5, 1), bundle_part("saucer", "SAUCER", 3.5, 2))
    )
    text, html = parts(settings, offers=parts_)
    assert "1. Complete the set - all 2 for £6.00\n" in text
    assert "save" not in text and "save" not in html
