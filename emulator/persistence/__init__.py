"""State kept across restarts with `--state-dir`: devices, twins, DPS records, enrollment edits.

Owns: the state file's document format (`document`); the write-ahead journal every change goes
to before it is acknowledged (`journal`); collecting the running emulator's state, putting it back
at start, journalling its changes and folding the journal into the state file (`writer`).

Does not own: the configuration file (`config`), certificates and keys (`certs`, `app`), or
when an acknowledgement is sent (the MQTT shell and the HTTP servers wait on the journal).
"""
