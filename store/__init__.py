"""Table storage for the allocation webhook: registration log, device inventory, lifecycle and retire logic.

Modules: `records` (values), `keys` (table key design), `base` (the `Store` protocol and errors),
`memory` and `tables` (the two backends), `inventory` and `lifecycle` (pure transitions),
`settings`, `replay`, `retire`, `deadline`. Importing this package imports no Azure SDK; only
`store.tables` and `store.retire`'s hub client do.
"""
