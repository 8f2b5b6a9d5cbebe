"""A local emulator of Azure IoT Hub Device Provisioning Service and IoT Hub.

`python -m emulator` serves DPS and any number of IoT hubs over MQTT 3.1.1 / TLS 1.2 so that the
unmodified Azure IoT device SDKs talk to it, and can host this repository's Functions app locally
so that DPS reaches the custom-allocation webhook over real HTTP.

Layout (pure cores under thin shells):

- `ports`: the Protocols between the transport/hub half and the DPS half.
- `mqtt/`: sans-IO MQTT 3.1.1 codec and server-side connection engine.
- `config`, `twin`, `dps`: pure values and decisions (no sockets, clocks or environment).
- `hub`, `dps_service`: the hub and DPS endpoints the shell routes connections to.
- `webhook_client`, `functions_host`: HTTP to and from the Functions app.
- `certs`, `server`, `app`, `__main__`: certificates, the asyncio shell, the composition root,
  the CLI.
"""
