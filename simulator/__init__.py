"""A device simulator for the DPS custom-allocation flow, and the tools a device factory needs.

`python -m simulator <command>` (`--local` points any of them at the running local cloud):

- `derive-key` / `verify-key`: per-device keys derived from an enrollment group's keys, into 0600
  secrets files (one device, or a batch for the factory) (`keys_cli`, files by `secrets_file`);
- `run`: one device on the real azure-iot-device SDK: provision, cache the hub connection in
  `settings.json`, read the twin, report, send telemetry, answer methods and C2D, survive key
  rotation (`run_cli`, over `device`);
- `fleet`: many devices at once, with a summary (`fleet`);
- `doctor`: how an enrollment is wired to the webhook, and how to fix it (`doctor`, checks in
  `wiring`).

Beside them: `device_settings` (settings.json), `dps_replies` (DPS's error codes, which the SDK
keeps to itself), `local` (what `--local` takes from the local cloud). The credential rules live
in the pure `sas` package; this package does the I/O.
"""
