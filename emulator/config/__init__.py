"""The emulator's configuration: a TOML file parsed once into frozen values.

- `model`: `EmulatorConfig` (DPS, hubs, enrollments, service policies, events, faults at start) and
  the hubs' `ServicePolicy`; the enrollments themselves are DPS's (`emulator.dps.enrollments`).
- `parse`: `parse_config(data, source=...)` validates a mapping as `tomllib` returns it and names
  the file, section and field of the first problem. Pure.
- `file`: the shell. `load_config(path)` reads the file, generates the enrollment keys it leaves
  out and writes them back (0600, atomically, comments kept); `write_enrollment_key` puts an
  operator's regenerated key into the file the same way, so the file always holds the keys DPS
  uses and the factory derives device keys from.

Shape (every field is documented in the README):

    [dps]                     id_scope, host
    [[hubs]]                  name (a host name, kept verbatim: devices use it as TCP host),
                              shared_access_key_name, shared_access_key (service API policy)
    [events]                  url (where lifecycle events are posted), connection_events
                              (snapshot | immediate), snapshot_interval (seconds)
    [faults.dps], [faults."<hub>"]  fault injection (fields in `emulator.faults.spec`)
    [[enrollment_groups]]     id, primary_key, secondary_key, allocation, webhook_url, hubs,
                              reprovision, initial_twin {tags, desired}, enabled
    [[individual_enrollments]] registration_id, device_id, and the same fields as a group

Errors: `ConfigError`, a file that cannot be read or a value that breaks the rules; the message
names the source, the section and the field, never a key value. The names below are the
package's public API.
"""

from emulator.config.file import load_config, missing_keys, write_enrollment_key
from emulator.config.model import EmulatorConfig, ServicePolicy
from emulator.config.parse import ConfigError, parse_config

__all__ = [
    "ConfigError",
    "EmulatorConfig",
    "ServicePolicy",
    "load_config",
    "missing_keys",
    "parse_config",
    "write_enrollment_key",
]
