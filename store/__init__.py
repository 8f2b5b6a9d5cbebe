"""Table storage for the allocation webhook: registration log, device inventory, lifecycle and retire logic.

Modules: `records` (values), `keys` (table design and keys), `base` (the `Store` protocol and
errors), `memory` and `tables` (the two backends; `changeset` builds the Table backend's
transactions, `rest` sends the webhook's two requests below the SDK, over `wire`, its HTTP/1.1
client), `inventory` and `lifecycle` (pure transitions), `settings`, `replay`, `retire`,
`deadline`, `logline` (escaped log values). Importing this package imports no Azure SDK; only
`store.tables` (with `store.changeset` and `store.rest`) and `store.retire`'s hub client do.
"""
