"""The operator's side: the admin API, the command-line client of it, and how tools find it.

Owns: the API (`api`, a Starlette app on `web.server`), the commands `python -m emulator status`
and friends (`cli`), and finding a running local cloud through its state directory's `admin.json`
(`client`, which the simulator uses too).

Does not own: what the commands change (`dps`, `hub`, `faults`); `cli` and `client` import no server
code, so an operator command stays quick to start.
"""
