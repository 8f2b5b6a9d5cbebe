"""Quotas and admission control: DPS and the hubs throttle as Azure does instead of timing out.

Owns: the quota settings of `[quotas]` and the decisions made with them (`limits`, pure: token
buckets, per-device windows, the overload rule) and the shell that applies them (`gate`: the hubs'
CONNACK 3 and twin 429s in front of each hub endpoint, and the event loop lag monitor).

Does not own: DPS's own 429 reply (DPS asks `limits.Quotas` through its `Admission` seam and
answers on every transport), fault injection (`faults`), or sockets (`mqtt.server`).
"""
