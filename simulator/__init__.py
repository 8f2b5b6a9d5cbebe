"""A device simulator for the DPS custom-allocation flow, and the tools a device factory needs.

`python -m simulator <command>`; commands so far:

- `derive-key`: per-device keys derived from a group enrollment key, written to 0600 secrets files
  (one device, or a batch for the factory);
- `verify-key`: whether a device key belongs to a group key and a registration id.

Modules:
    keys_cli   the two key commands and their function-level API (``derive_secrets``,
               ``write_secret_file``, ``DeviceSecrets``)
    __main__   the argparse entry point that dispatches to the commands

The credential rules themselves live in the pure ``sas`` package; this package does the I/O.
"""
