"""The relevance audit (`xsell audit`): recent offers with the basket that triggered each, as sheets
for a merchandiser to rate, and the automatic checks that need no rater.

Checks, per offer type (the "kind" is the catalog category of `features.catalog`):
  * up-sells of another kind than the item they upgrade;
  * up-sells not dearer than what the customer paid for that item (must be 0; orders whose lines
    the purchase archive does not hold are not counted);
  * cross-sells that claim "Often bought with X" below the claim threshold
    (`models.candidates.bought_together`: the index's minimum support, the claim's lift, beyond
    chance; must be 0);
  * variants: cross-sells of the family of a basket item (`features.catalog.same_family`), or of
    its kind, size and head noun at another price: another design of what was just bought rather
    than something that goes with it (the rule `models.candidates` gives "More designs like").
`audit_rows` is a pure function of decisions, basket lines and the candidate index; `run_audit`
reads them from the offer state, the purchase archive and the model version of each decision
(the champion's, or a challenger's in a live trial).
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import same_family, size_words
from models.candidates import CandidateConfig, bought_together
from models.index import CandidateIndex
from models.reasons import CLAIM_PREFIX, EARLIER_SUFFIX
from models.registry import version_number
from xsell.offers import OfferDecision, OfferType
from xsell.settings import Settings

SHEET_COLUMNS = (
    "decided_at",
    "order_id",
    "customer_id",
    "basket",
    "offer_type",
    "product_id",
    "name",
    "price",
    "reason",
    "kind",
    "upgrades_name",
    "paid",
    "same_kind",
    "dearer_than_paid",
    "claim_lift",
    "claim_orders",
    "claim_ok",
    "variant",
    "bundle_id",
    "rating",
    "note",
)


@dataclass(frozen=True)
class AuditChecks:
    """The automatic checks over the audited offers."""

    decisions: int
    up_sells: int
    up_sells_other_kind: int
    up_sells_not_dearer: int
    cross_sells: int
    claims: int
    claims_below_threshold: int
    variants: int
    bundles: int

    def lines(self) -> list[str]:
        """The checks as short lines for a terminal."""
        return [
            f"decisions audited: {self.decisions}",
            f"up-sells: {self.up_sells}; of another kind: {self.up_sells_other_kind} ({_share(self.up_sells_other_kind, self.up_sells)})",
            f"up-sells not dearer than what was paid: {self.up_sells_not_dearer} (must be 0)",
            f"cross-sells: {self.cross_sells}; 'Often bought with' claims: {self.claims}, "
            f"below the lift threshold: {self.claims_below_threshold} (must be 0)",
            f"variants (another design of a basket item): {self.variants} ({_share(self.variants, self.cross_sells)} of cross-sells)",
            f"bundles ('complete the set', one offer of several cross-sells): {self.bundles}",
        ]


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def audit_rows(
    decisions: list[OfferDecision], lines: pd.DataFrame, index: CandidateIndex, claims: CandidateConfig
) -> pd.DataFrame:
    """One row per offer of ``decisions`` (``SHEET_COLUMNS``): its basket (from ``lines``, the
    order lines with order_id, product_id, product_name, unit_price), the checks, and empty
    ``rating`` and ``note`` columns for the rater."""
    products = index.products.set_index("product_id")
    category = products["category"].where(products["category"].notna(), None).to_dict()
    names = products["name"].to_dict()
    heads = products["head"].to_dict() if "head" in products else {}
    orders = products["orders"].to_dict()
    by_name: dict[str, list[str]] = {}
    for product_id, name in names.items():
        if isinstance(name, str):
            by_name.setdefault(name, []).append(product_id)
    cooccurrence = index.cooccurrence.tocsr()

    def together(a: str, b: str) -> tuple[float, int]:
        if a not in index.position or b not in index.position:
            return 0.0, 0
        count = int(cooccurrence[index.position[a], index.position[b]])
        lift = count * index.orders / max(orders.get(a, 0) * orders.get(b, 0), 1)
        return float(lift), count

    basket_lines = lines[lines["order_id"].isin({d.order_id for d in decisions})]
    baskets = dict(list(basket_lines.groupby("order_id", sort=False)))
    rows = []
    for decision in decisions:
        basket = baskets.get(decision.order_id, basket_lines.iloc[:0])
        paid = basket.groupby("product_id")["unit_price"].max().to_dict()
        basket_text = "; ".join(
            f"{name if isinstance(name, str) and name else names.get(product, product)} ({price:.2f})"
            for product, name, price in basket[["product_id", "product_name", "unit_price"]].itertuples(index=False)
        )
        basket_kinds = {category.get(p) for p in paid} - {None}
        for offer in decision.offers:
            kind = category.get(offer.product_id)
            row: dict[str, object] = {
                "decided_at": decision.decided_at.isoformat(),
                "order_id": decision.order_id,
                "customer_id": decision.customer_id,
                "basket": basket_text,
                "offer_type": offer.offer_type.value,
                "product_id": offer.product_id,
                "name": offer.name,
                "price": offer.price,
                "reason": offer.reason,
                "kind": kind,
                "bundle_id": offer.bundle_id,
            }
            if offer.offer_type is OfferType.UP_SELL:
                upgraded = offer.upgrades or ""
                row["upgrades_name"] = names.get(upgraded, upgraded)
                row["paid"] = paid.get(upgraded)
                row["same_kind"] = kind is not None and kind == category.get(upgraded)
                if upgraded in paid:  # unknown when the archive does not hold the order's lines
                    row["dearer_than_paid"] = offer.price is not None and offer.price > paid[upgraded]
            else:
                if offer.reason.startswith(CLAIM_PREFIX):
                    seeds = by_name.get(offer.reason[len(CLAIM_PREFIX) :].removesuffix(EARLIER_SUFFIX), [])
                    (lift, count), seed = max(
                        ((together(s, offer.product_id), s) for s in seeds), default=((0.0, 0), None)
                    )
                    row["claim_lift"], row["claim_orders"] = round(lift, 2), count
                    row["claim_ok"] = seed is not None and bool(
                        bought_together(
                            np.asarray([count]),
                            np.asarray([orders.get(seed, 0)]),
                            np.asarray([orders.get(offer.product_id, 0)]),
                            index,
                            claims,
                        )[0]
                    )
                row["variant"] = kind in basket_kinds and any(
                    p != offer.product_id
                    and (
                        same_family(
                            kind, size_words(offer.name), offer.price, category.get(p), size_words(names.get(p)), price
                        )
                        or (  # a dearer or cheaper design of the same head noun and size
                            kind == category.get(p)
                            and size_words(offer.name) == size_words(names.get(p))
                            and heads.get(offer.product_id) is not None
                            and heads.get(offer.product_id) == heads.get(p)
                        )
                    )
                    for p, price in paid.items()
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=list(SHEET_COLUMNS))


def bundle_rows(parts: pd.DataFrame) -> pd.DataFrame:
    """The sheet rows of bundle parts as one row per bundle, rated as the one offer it is: the
    parts' ids and names joined with " + ", their total price and the bundle's reason."""
    joined = " + ".join
    bundles = parts.groupby("bundle_id", sort=False).agg(
        decided_at=("decided_at", "first"),
        order_id=("order_id", "first"),
        customer_id=("customer_id", "first"),
        basket=("basket", "first"),
        product_id=("product_id", joined),
        name=("name", lambda names: joined(str(n) for n in names)),
        price=("price", "sum"),
        reason=("reason", "first"),
    )
    return bundles.reset_index().assign(offer_type="bundle").reindex(columns=list(SHEET_COLUMNS))


def audit_checks(rows: pd.DataFrame, decisions: int) -> AuditChecks:
    """The automatic checks over the sheet rows."""
    up, cross = rows[rows["offer_type"] == "up_sell"], rows[rows["offer_type"] == "cross_sell"]
    claims = cross[cross["claim_ok"].notna()]
    return AuditChecks(
        decisions=decisions,
        up_sells=len(up),
        up_sells_other_kind=int((~up["same_kind"].astype(bool)).sum()),
        up_sells_not_dearer=int(up["dearer_than_paid"].eq(False).sum()),
        cross_sells=len(cross),
        claims=len(claims),
        claims_below_threshold=int((~claims["claim_ok"].astype(bool)).sum()),
        variants=int(cross["variant"].astype(bool).sum()),
        bundles=int(rows["bundle_id"].nunique()),
    )


def run_audit(settings: Settings, out: Path, sample: int = 100, recent: int = 5000, seed: int = 0) -> AuditChecks:
    """Audit the ``recent`` latest decisions: write ``up_sell.csv``, ``cross_sell.csv`` (single
    offers) and ``bundle.csv`` (a row per bundle; at most ``sample`` rows of each, drawn with
    ``seed``) and ``checks.json`` (over all of them) to ``out``, and return the checks."""
    from features.archive import PurchaseArchive  # noqa: PLC0415  (the archive reads pandas tables: only here)
    from models.champion import load_champion  # noqa: PLC0415  (MLflow and LightGBM: slow to import)
    from services.offers.state import OfferStateStore  # noqa: PLC0415

    state = OfferStateStore(settings.db_url)
    try:
        decisions = [d for d in state.latest(recent) if d.offers]
    finally:
        state.close()
    archive = PurchaseArchive(settings.db_url)
    try:
        lines = archive.lines(since=min((d.occurred_at for d in decisions), default=None))
    finally:
        archive.close()
    # each decision is checked against the index of the model that made it (the champion's or a
    # challenger's); no decision: the champion's, which also says when no model is registered
    by_version: dict[int | None, list[OfferDecision]] = {} if decisions else {None: []}
    for decision in decisions:
        version = version_number(decision.model_version) if decision.model_version else None
        by_version.setdefault(version, []).append(decision)
    with tempfile.TemporaryDirectory(prefix="xsell-audit-") as scratch:
        frames = []
        for version, decided in by_version.items():
            model = load_champion(settings, Path(scratch) / str(version), version=version)
            frames.append(audit_rows(decided, lines, model.index, model.candidate_config))
    rows = pd.concat(frames, ignore_index=True)
    checks = audit_checks(rows, len(decisions))
    out.mkdir(parents=True, exist_ok=True)
    draw = random.Random(seed)
    single = rows["bundle_id"].isna()
    sheets = {
        "up_sell": rows[single & (rows["offer_type"] == "up_sell")],
        "cross_sell": rows[single & (rows["offer_type"] == "cross_sell")],
        "bundle": bundle_rows(rows[~single]),
    }
    for name, sheet in sheets.items():
        picked = sorted(draw.sample(range(len(sheet)), min(sample, len(sheet))))
        sheet.iloc[np.asarray(picked, dtype=np.int64)].to_csv(out / f"{name}.csv", index=False)
    (out / "checks.json").write_text(json.dumps(asdict(checks), indent=1) + "\n")
    return checks
