"""IoT Hub's service REST API, as azure-iot-hub's registry manager uses it.

Owns: the API's core (`api`: auth, routing, semantics, errors; pure), the JSON shapes of devices and
twins (`views`), each hub's policy keys and the connection strings in `hubs.json` (`credentials`),
and the per-hub HTTPS listeners (`server`, on `web.server`).

Does not own: the registry itself (`hub`), HTTP parsing (uvicorn, through `web`).
"""
