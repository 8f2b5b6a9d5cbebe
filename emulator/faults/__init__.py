"""Fault injection for drills: throttling, webhook latency, refused and dropped connections.

Owns: fault specs and their state over time (`spec`, pure) and the gate that applies them in front
of an MQTT endpoint, plus the delayed webhook (`gate`).

Does not own: the endpoints themselves, or the operator commands that set faults (`operator`).
"""
