"""`TableRest`: the webhook's two Table requests, below azure-data-tables.

The hot path of a webhook call is a point read of the device row (the retired check) and one
entity-group transaction (the log row and the inventory update), or a single upsert of the log
row when the inventory does not change. They go through here; every
other store operation (queries, table creation, the legacy lookups, migration) stays on
azure-data-tables in `store.tables`. The REST contract each request follows, with its public
sources, is in docs/protocol/table-rest.md.

Why below the SDK: the webhook's goal is at most 3x the CPU of the in-memory store per call, and
one request through azure-core's pipeline (policies, request copies, the requests transport, the
generated operation's deserialisation) costs more CPU than the store may add. Measured on
Azurite on loopback, CPU of this process per request: point read 0.71-0.77 ms through
`TableClient.get_entity`, 0.19-0.22 ms on urllib3 with these same headers, 0.08 ms here; the
two-row transaction 0.83-0.85 ms through the client's own pipeline, 0.39-0.45 ms on urllib3,
0.11 ms here.
The requests go over `store.wire`, a keep-alive HTTP/1.1 client for one host (why not urllib3,
http.client or h11, measured, is in its docstring): pooled connections, TLS verified against
the system's trust store, connect and read timeouts, one end per request.

What the SDK still decides: where the account is and how to authorize (`from_client` takes the
endpoint, credential, table name and API version of the `TableClient` built from the connection
string, so `UseDevelopmentStorage=true`, account keys and SAS connection strings mean the same
here as there), and how a written entity is serialised (`store.changeset`), so rows written here
read back through the SDK exactly like its own.

- Authorization: Shared Key for the Table service (HMAC-SHA256 of VERB, Content-MD5, Content-Type,
  x-ms-date and the canonicalized resource, under the decoded account key), or a SAS appended to
  each URL. Any other credential: `from_client` returns None and the store keeps the SDK.
- Reads ask for `application/json;odata=nometadata`: the properties as plain JSON, the etag in
  the `ETag` header. A device row holds only strings, 32-bit integers and nulls, so nothing is lost
  without type annotations.
- One attempt (a GET or PUT on a connection the server closed while idle is sent again on a new
  one, `store.wire`), no redirects, no proxies (the store keeps the SDK when the environment
  names one), answers bounded to `MAX_ANSWER_BYTES`.
- Time: connect and read timeouts of `timeout` seconds each, and each request ends at most
  `2 * timeout` after it starts, however slowly the peer answers; inside an inline
  `store.deadline.call_with_deadline`, no later than its deadline, and no request at all once
  nothing is left, so the webhook's read and transaction together stay within its storage
  budget without a thread.

Errors (neither carries a URL, a key or the service's message):

    Exception
    ├── Unanswered   no complete HTTP answer (refused, reset, malformed, too large); `.timed_out`
    └── Refused      an HTTP answer with an error status; `.status`, `.code` (the service's error code)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

from store.changeset import Change, changeset_body, entity_json, entity_path, part_statuses
from store.deadline import active
from store.wire import Unanswered, Wire

if TYPE_CHECKING:
    from azure.data.tables import TableClient

MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_IDLE_CONNECTIONS = 16
NO_METADATA = "application/json;odata=nometadata"
_USER_AGENT = f"dps-webhook-store Python/{platform.python_version()}"


class Refused(Exception):
    """An HTTP answer with an error status, and the service's error code when it gave one."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"{status} ({code})")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Entity:
    """A row as read: its properties (keys and system properties included) and its etag."""

    properties: Mapping[str, Any]
    etag: str


class TableRest:
    """Point reads and entity-group transactions on one table."""

    def __init__(
        self,
        *,
        account_url: str,
        table: str,
        credential: AzureNamedKeyCredential | AzureSasCredential,
        api_version: str,
        timeout: float,
        on_send: Callable[[str], None] | None = None,
    ) -> None:
        url = urlsplit(account_url)
        try:
            port = url.port
        except ValueError:
            port = -1
        if url.scheme not in ("http", "https") or not url.hostname or url.query or port == -1:
            raise ValueError("account_url: expected http(s)://host[:port][/account]")
        self._account_url = account_url.rstrip("/")
        self._table = table
        self._path = (url.path or "").rstrip("/")
        default_port = 443 if url.scheme == "https" else 80
        self._wire = Wire(
            url.scheme,
            url.hostname,
            port or default_port,
            max_idle=MAX_IDLE_CONNECTIONS,
            on_send=on_send,
        )
        self._seconds = float(timeout)
        self._fixed = [
            ("User-Agent", _USER_AGENT),
            ("x-ms-version", api_version),
            ("DataServiceVersion", "3.0"),
            ("MaxDataServiceVersion", "3.0;NetFx"),
        ]
        self._account = ""
        self._key = b""
        self._query = ""
        if isinstance(credential, AzureNamedKeyCredential):
            self._account = credential.named_key.name
            try:
                self._key = base64.b64decode(credential.named_key.key, validate=True)
            except ValueError:
                raise ValueError("AccountKey: expected base64") from None
        elif isinstance(credential, AzureSasCredential):
            self._query = "?" + credential.signature.lstrip("?")
            if not self._query.isprintable() or " " in self._query:
                raise ValueError("SharedAccessSignature: expected a URL query string")
        else:
            raise TypeError("credential: expected an account key or a SAS")

    @classmethod
    def from_client(
        cls,
        client: TableClient,
        *,
        timeout: float,
        on_send: Callable[[str], None] | None = None,
    ) -> TableRest | None:
        """The same table, account and credential as `client`; None when its credential is neither
        an account key nor a SAS (the caller keeps the SDK then)."""
        credential = client.credential
        if not isinstance(credential, AzureNamedKeyCredential | AzureSasCredential):
            return None
        return cls(
            account_url=client.url,
            table=client.table_name,
            credential=credential,
            api_version=client.api_version,
            timeout=timeout,
            on_send=on_send,
        )

    def close(self) -> None:
        """Close the idle connections."""
        self._wire.close()

    # -- the two requests ----------------------------------------------------------------------------------------

    def read(self, partition_key: str, row_key: str) -> Entity | None:
        """The entity with these keys, or None (404)."""
        path = f"{self._path}/{entity_path(self._table, partition_key, row_key)}"
        status, headers, body = self._send("GET", path, {"Accept": NO_METADATA})
        if status == 404:
            return None
        if status != 200:
            raise Refused(status, error_code(headers.get("x-ms-error-code"), body))
        return entity_answer(headers.get("etag"), body)

    def upsert(self, entity: Mapping[str, Any]) -> None:
        """Insert or replace one entity (a PUT without If-Match): cheaper than a transaction of one."""
        path = f"{self._path}/{entity_path(self._table, entity['PartitionKey'], entity['RowKey'])}"
        content = entity_json(entity).encode("utf-8")
        status, headers, body = self._send(
            "PUT", path, {"Accept": NO_METADATA, "Content-Type": "application/json"}, content
        )
        if status != 204:
            raise Refused(status, error_code(headers.get("x-ms-error-code"), body))

    def transact(self, changes: Sequence[Change]) -> list[int]:
        """Send one entity-group transaction; the status of each part of the answer, in order."""
        content_type, content = changeset_body(self._account_url, self._table, changes)
        status, headers, body = self._send(
            "POST",
            f"{self._path}/$batch",
            {"Accept": "application/json", "Content-Type": content_type},
            content,
        )
        if status != 202:
            raise Refused(status, error_code(headers.get("x-ms-error-code"), body))
        return part_statuses(body.decode("utf-8", "replace"))

    # -- HTTP ----------------------------------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, headers: dict[str, str], content: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        now = time.monotonic()
        end = now + 2 * self._seconds  # connect, then read: neither longer than `timeout`
        deadline = active()
        if deadline is not None:  # an inline `call_with_deadline`: this request gets what is left
            left = deadline.remaining()
            if left <= 0:
                raise Unanswered("no time left of the call's deadline", timed_out=True)
            end = min(end, now + left)
        date = formatdate(usegmt=True)
        head = [*self._fixed, *headers.items(), ("x-ms-date", date)]
        if self._key:
            head.append(
                (
                    "Authorization",
                    self._authorization(method, path, headers.get("Content-Type", ""), date),
                )
            )
        answer = self._wire.request(
            method,
            path + self._query,
            head,
            content,
            connect_timeout=self._seconds,
            read_timeout=self._seconds,
            end=end,
            max_body=MAX_ANSWER_BYTES,
        )
        return answer.status, answer.headers, answer.body

    def _authorization(self, method: str, path: str, content_type: str, date: str) -> str:
        """Shared Key for the Table service: VERB, Content-MD5 (none), Content-Type, Date and the
        canonicalized resource (``/account`` + the path as sent; no ``comp`` here)."""
        to_sign = f"{method}\n\n{content_type}\n{date}\n/{self._account}{path}"
        digest = hmac.new(self._key, to_sign.encode("utf-8"), hashlib.sha256).digest()
        return f"SharedKey {self._account}:{base64.b64encode(digest).decode('ascii')}"


def entity_answer(etag: str | None, body: bytes) -> Entity:
    """A point read's answer (``odata=nometadata``) as an `Entity`; `Unanswered` when it is not
    a JSON object with string property names, or when the ETag header is missing."""
    if not etag:
        raise Unanswered("the entity came without an ETag")
    try:
        properties = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Unanswered("the entity was not JSON") from None
    if not isinstance(properties, dict):
        raise Unanswered("the entity was not a JSON object")
    return Entity(properties=properties, etag=etag)


def error_code(header: str | None, body: bytes) -> str | None:
    """The service's error code: the ``x-ms-error-code`` header, else ``odata.error.code``."""
    if header:
        return header[:64]
    try:
        code = json.loads(body)["odata.error"]["code"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return code[:64] if isinstance(code, str) else None


__all__ = ["Entity", "Refused", "TableRest", "Unanswered", "entity_answer", "error_code"]
