"""`EndpointGate`: an `endpoints.MqttEndpoint` in front of another, answering some traffic itself.

The fault gate (`faults.gate.FaultGate`) and the quota gate (`quotas.gate.HubQuotaGate`) stand
between the MQTT shell and DPS or a hub, and differ only in what they refuse: a gate refuses a
CONNECT with CONNACK 3 ("server unavailable"), answers some PUBLISHes itself (a 429), and hears
which connections were accepted and which ended. Everything else reaches the endpoint unchanged,
with the arguments it was given. A subclass overrides the hooks it needs; the defaults pass
everything through.
"""

from __future__ import annotations

from emulator.endpoints import (
    CONNACK_ACCEPTED,
    CONNACK_SERVER_UNAVAILABLE,
    Close,
    ConnectAnswer,
    MqttEndpoint,
    Send,
    connack_of,
)

__all__ = ["EndpointGate"]


class EndpointGate:
    """Passes everything to `endpoint`, except what the hooks refuse or answer."""

    def __init__(self, endpoint: MqttEndpoint) -> None:
        self.endpoint = endpoint

    # -- hooks ---------------------------------------------------------------------------------------------------------

    def refuses_connect(self, now: float) -> bool:
        """True to answer a CONNECT with CONNACK 3 before the endpoint sees it."""
        return False

    def accepted(self, client_id: str, close: Close) -> None:
        """A CONNECT the endpoint accepted."""

    def answers(self, *, topic: str, send: Send, now: float) -> bool:
        """True when the gate answered this PUBLISH itself (through `send`)."""
        return False

    def ended(self, client_id: str) -> None:
        """A connection that ended (the shell's DISCONNECT, or the socket closing)."""

    # -- the MqttEndpoint ----------------------------------------------------------------------------------------------

    def connect(
        self,
        *,
        client_id: str,
        username: str,
        password: bytes | None,
        send: Send,
        close: Close,
        now: float,
        clean_session: bool = True,
    ) -> int | ConnectAnswer:
        """CONNACK 3 when the gate refuses, else the endpoint's answer."""
        if self.refuses_connect(now):
            return CONNACK_SERVER_UNAVAILABLE
        answer = self.endpoint.connect(
            client_id=client_id,
            username=username,
            password=password,
            send=send,
            close=close,
            now=now,
            clean_session=clean_session,
        )
        if connack_of(answer).code == CONNACK_ACCEPTED:
            self.accepted(client_id, close)
        return answer

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> bool:
        """Answered by the gate, or by the endpoint."""
        if self.answers(topic=topic, send=send, now=now):
            return True
        return self.endpoint.publish(
            client_id=client_id, topic=topic, payload=payload, send=send, now=now
        )

    def subscribe(self, *, client_id: str, topic_filter: str, qos: int = 1) -> bool:
        """Passed through."""
        return self.endpoint.subscribe(client_id=client_id, topic_filter=topic_filter, qos=qos)

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        """Passed through."""
        self.endpoint.unsubscribe(client_id=client_id, topic_filter=topic_filter)

    def disconnect(self, *, client_id: str) -> None:
        """Heard by the gate, then passed through."""
        self.ended(client_id)
        self.endpoint.disconnect(client_id=client_id)
