"""A local emulator of Azure IoT Hub Device Provisioning Service and IoT Hub: the local cloud.

`python -m emulator up` serves DPS and any number of IoT hubs over MQTT 3.1.1 / TLS 1.2, and on
the HTTPS port over MQTT/WebSockets and HTTPS, so that the unmodified Azure IoT device SDKs talk
to it, each hub's service REST API over HTTPS for
azure-iot-hub, and this repository's Functions app, so that DPS reaches the custom-allocation
webhook over real HTTP. Layers, each a sub-package that says what it owns:

- `mqtt/`: the MQTT 3.1.1 codec and engine (pure) and its asyncio shell, over TLS or WebSockets.
- `https/`: the HTTPS port devices reach: DPS's and the hubs' HTTPS device APIs, WebSockets.
- `dps/`: the Device Provisioning Service: enrollments, auth, wire format, allocation,
  re-provisioning (pure), and its endpoint.
- `hub/`: IoT Hub's identity registry, twins and device endpoint (pure).
- `service/`: the hubs' service REST API and its listeners.
- `events/`: device lifecycle events in Event Grid's form, and their delivery.
- `faults/`: fault injection for drills.
- `persistence/`: state kept across restarts.
- `operator/`: the admin API, the operator commands and how tools find a running cloud.
- `functions/`: the local Functions host and its `local.settings.json`.
- `web/`: the one HTTP server stack (Starlette on uvicorn) and the one HTTP client (httpx).
- `config/`: the configuration file.

Modules at the top: `app` (the composition root: it alone wires components), `endpoints` (the
contracts between the MQTT server and DPS or a hub, and which one a CONNECT is for), `gating`
(an endpoint in front of another: the fault and quota gates' common part), `activity`
(what happens, for watchers), `certs`, and the entry points `__main__`, `run`, `up`,
`foreground`, `in_process`. Cores never import shells; the operator commands import no server.
"""
