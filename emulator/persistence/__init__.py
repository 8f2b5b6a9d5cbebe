"""State kept across restarts with `--state-dir`: devices, twins, DPS records, enrollment edits.

Owns: the state file's document format and its reading and writing (`document`), and collecting
the running emulator's state, putting it back at start and writing it when it changed (`writer`).

Does not own: the configuration file (`config`), certificates and keys (`certs`, `app`).
"""
