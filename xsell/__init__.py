"""xsell: the shared contracts every stage imports.

`xsell.settings` (one typed settings object), `xsell.events` (the purchase-event contract),
`xsell.history` (the purchase-history readers), `xsell.offers` (the offer contracts). Stage code
lives in the top-level folders `infra/`, `features/`, `models/`, `training/`, `services/`; the
entry points that compose them (the `xsell` CLI, `make run`'s job, the backtest) in `cli/`.
"""
