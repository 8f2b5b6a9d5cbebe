"""How tools find and talk to a running local cloud: its state directory, `admin.json`, the admin API.

The emulator writes `<state-dir>/admin.json` once everything it runs is up (so the file's presence
means "ready") and removes it when it stops; the bearer token is in `<state-dir>/admin-token`
(0600). What `admin.json` holds (no secret):

    url            the operator API, http://127.0.0.1:<port>
    bind           the address DPS and the hubs listen on (the SDK's `gateway_hostname`)
    mqtt_port      the MQTT/TLS port (8883)
    ca             the CA certificate clients trust (`server_verification_cert`)
    config         the configuration file the emulator was started with
    functions_url  the local Functions host, when it hosts the app
    console_url    the web console, with its login token (so the file is 0600, like the token's)
    pid            the emulator's process id

Which state directory, first found wins: `--state-dir`, `$EMULATOR_STATE_DIR`, a `.emulator`
directory in the current directory or one above it, the `.emulator` of the checkout these tools
were installed from, `./.emulator`. So the operator commands and the simulator work from any
directory of the project, and from elsewhere once `make up` has run.

This module imports no server code: `python -m emulator status` stays light.

Errors:

    Unreachable   no running emulator found, or its admin API does not answer
    Refused       the admin API answered with an error (its code and message)
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.checkout import CHECKOUT
from devtools.files import write_private

__all__ = [
    "ADMIN_FILE",
    "DEFAULT_STATE_DIR",
    "STATE_DIR_VARIABLE",
    "TOKEN_FILE",
    "AdminClient",
    "LocalCloud",
    "Refused",
    "Unreachable",
    "find_state_dir",
    "registration_line",
    "remove_admin_file",
    "waiting_reason",
    "write_admin_file",
]

ADMIN_FILE = "admin.json"
TOKEN_FILE = "admin-token"  # noqa: S105 -- a file name, not a secret
DEFAULT_STATE_DIR = Path(".emulator")
STATE_DIR_VARIABLE = "EMULATOR_STATE_DIR"
REQUEST_TIMEOUT = 10.0


class Unreachable(Exception):
    """The local cloud cannot be found or its admin API cannot be reached."""


class Refused(Exception):
    """The admin API answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code


def find_state_dir(
    given: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """The state directory to use (see the module docstring for the order)."""
    if given is not None:
        return given
    environment = os.environ if env is None else env
    if environment.get(STATE_DIR_VARIABLE):
        return Path(environment[STATE_DIR_VARIABLE])
    here = (cwd or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / DEFAULT_STATE_DIR
        if candidate.is_dir():
            # Relative when it is the process's own working directory: shorter in messages.
            return DEFAULT_STATE_DIR if cwd is None and directory == here else candidate
    if (CHECKOUT / DEFAULT_STATE_DIR).is_dir():
        return CHECKOUT / DEFAULT_STATE_DIR
    return DEFAULT_STATE_DIR


def write_admin_file(state_dir: Path, info: Mapping[str, Any]) -> Path:
    """Write `admin.json` (the emulator calls this when it is ready)."""
    path = state_dir / ADMIN_FILE
    write_private(path, json.dumps(dict(info), indent=2) + "\n")
    return path


def remove_admin_file(state_dir: Path) -> None:
    """Remove `admin.json` (the emulator calls this when it stops)."""
    (state_dir / ADMIN_FILE).unlink(missing_ok=True)


@dataclass(frozen=True, kw_only=True)
class LocalCloud:
    """A running local cloud, as its `admin.json` describes it."""

    state_dir: Path
    url: str
    token: str = field(repr=False)
    bind: str = "127.0.0.1"
    mqtt_port: int = 8883
    ca: Path | None = None
    config: Path | None = None
    functions_url: str | None = None
    console_url: str | None = field(default=None, repr=False)  # carries the console's token
    pid: int | None = None

    @classmethod
    def find(cls, state_dir: Path | None = None) -> LocalCloud:
        """The local cloud whose state directory is `state_dir` (found as documented above)."""
        directory = find_state_dir(state_dir)
        try:
            info = json.loads((directory / ADMIN_FILE).read_text(encoding="utf-8"))
            token = (directory / TOKEN_FILE).read_text(encoding="utf-8").strip()
            url = info["url"]
            if not isinstance(url, str) or not url.startswith("http://") or not token:
                raise ValueError(url)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise Unreachable(
                f"no running local cloud found in {directory} ({ADMIN_FILE}); start one with "
                "`make up` (or `python -m emulator up`), or pass --state-dir"
            ) from None
        return cls(
            state_dir=directory,
            url=url.rstrip("/"),
            token=token,
            bind=str(info.get("bind") or "127.0.0.1"),
            mqtt_port=int(info.get("mqtt_port") or 8883),
            ca=_path(info.get("ca")),
            config=_path(info.get("config")),
            functions_url=info.get("functions_url") or None,
            console_url=info.get("console_url") or None,
            pid=info.get("pid") if isinstance(info.get("pid"), int) else None,
        )

    def client(self) -> AdminClient:
        """A client of this cloud's admin API."""
        return AdminClient(self.url, self.token)


def _path(value: object) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


class AdminClient:
    """JSON calls to the admin API with the bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url.rstrip("/")
        self._token = token

    @classmethod
    def from_state_dir(cls, state_dir: Path | None = None) -> AdminClient:
        """The client of the local cloud found through `state_dir`."""
        return LocalCloud.find(state_dir).client()

    def call(
        self, method: str, path: str, body: object = None, *, timeout: float = REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        """One request; the answer's JSON object, or `Refused` / `Unreachable`."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(  # noqa: S310 -- http:// checked in LocalCloud.find
            self._url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read())["error"]
                raise Refused(error.code, detail["code"], detail["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise Refused(error.code, "Error", error.reason) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise Unreachable(
                f"cannot reach the local cloud at {self._url} ({reason}); is it still running? "
                "(`make up`)"
            ) from None


def registration_line(entry: dict[str, Any]) -> str:
    """One registration for people: where it went, or why it has not (yet)."""
    name, status = entry["registration_id"], entry["status"]
    if status == "assigned":
        detail = f"-> {entry['assigned_hub']} as {entry['device_id']}"
        if entry.get("substatus"):
            detail += f" ({entry['substatus']})"
        if entry.get("model_id"):
            detail += f", model {entry['model_id']}"
        return f"{name:<40} assigned {detail}"
    if status == "assigning":
        return f"{name:<40} assigning: {waiting_reason(entry)}"
    if status == "failed":
        line = f"{name:<40} FAILED {entry.get('error_code')}: {entry.get('error_message')}"
        if entry.get("webhook_answer"):
            line += f" (webhook answered {entry['webhook_status']}: {entry['webhook_answer']})"
        return line
    return f"{name:<40} {status.upper()} (the enrollment or device is disabled)"


def waiting_reason(entry: dict[str, Any]) -> str:
    """Why DPS is still assigning a device: the webhook's last answer and the next call."""
    calls = entry.get("webhook_calls") or 0
    if calls == 0:
        return "allocating"
    last = (
        f"HTTP {entry['webhook_status']}"
        if entry.get("webhook_status") is not None
        else f"no answer ({entry.get('webhook_error') or 'unreachable'})"
    )
    text = f"the webhook's answer to call {calls} of {entry.get('webhook_max_calls')} was {last}"
    if entry.get("webhook_status") == 429:
        text += " (the app could not check the store: is Table storage up?)"
    elif entry.get("webhook_status") == 503:
        text += " (the app's policy failed to load)"
    if entry.get("next_call_in") is not None:
        text += f"; DPS calls it again in {entry['next_call_in']:g} s"
    return text
