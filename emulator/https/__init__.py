"""The HTTPS port (443 by default): how devices reach DPS and the hubs besides MQTT on 8883.

Owns: the listener and how it tells requests apart by path and `Host` (`gateway`), DPS's HTTPS
device API (`dps_api`: register and poll, translated to the same `DpsService` calls the MQTT
endpoint makes) and IoT Hub's HTTPS device API (`hub_api`: telemetry in, cloud-to-device
messages out with locks, translated to the hub's device operations). MQTT over WebSockets
arrives here too and goes to the MQTT shell (`mqtt.websocket`).

Does not own: registration, allocation or any hub state (`dps`, `hub`), the HTTP server stack
(`web.server`), the MQTT engine (`mqtt`). `dps_api` and `hub_api` do no I/O and read no clock.
"""
