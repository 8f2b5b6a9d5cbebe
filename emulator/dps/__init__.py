"""The Device Provisioning Service as the device SDKs see it.

Owns: enrollments (`enrollments`, and operators' edits to them: `edits`), who may register
(`auth`), the wire format over MQTT (`wire`), which hub a device gets (`allocation`: native
`static`/`hashed`, and the custom-allocation webhook's contract), what an assignment does to the
hubs (`reprovision`), and the endpoint that sequences it all on the event loop (`service`), calling
webhooks through `webhook`. All but `service` and `webhook` are pure.

Does not own: sockets (`mqtt.server`), the hubs (reached through `endpoints.HubDirectory`), faults
(`faults.gate` wraps the endpoint), persistence (`persistence`).
"""
