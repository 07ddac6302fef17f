"""xsell: the shared contracts every stage imports.

`xsell.settings` (one typed settings object), `xsell.events` (the purchase-event contract),
`xsell.history` (the purchase-history readers) and `xsell.cli` (the one CLI). Stage code lives in the
top-level folders: `infra/`, `features/`, `models/`, `training/`, `services/`.
"""
