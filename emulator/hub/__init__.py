"""IoT Hub: its identity registry and the MQTT endpoint its devices connect to.

Owns: device identities, twins and etags (`registry`, `twin`), a device as one value (`views`),
the device side over MQTT with sessions, C2D, direct methods and telemetry (`endpoint`), what
travels on device topics (`messages`), C2D messages and a device's queue (`c2d`), device
lifecycle events as values (`device_events`) and when connection changes are reported
(`presence`), and every hub by host name (`directory`, what DPS assigns through). All pure: no
sockets, no clock.

Does not own: the service REST API (`service`), JSON views (`service.views`), event delivery
(`events`), sockets (`mqtt.server`).
"""
