"""`store.rest`: Shared Key as the SDK signs it, SAS and wrong keys against Azurite, and answers
of any shape (a raw socket server and Hypothesis) ending in the store's errors, never a crash."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.data.tables import AccountSasPermissions, ResourceTypes, generate_account_sas
from azure.data.tables._authentication import SharedKeyCredentialPolicy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.azurite import RequestCount
from store.base import StoreError, StoreTimeout, StoreUnavailable
from store.deadline import Deadline, call_with_deadline
from store.records import Outcome, RegistrationRecord
from store.rest import (
    MAX_ANSWER_BYTES,
    Entity,
    Refused,
    TableRest,
    Unanswered,
    entity_answer,
    error_code,
)
from store.tables import TableStore
from tests.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, fresh_prefix
from tests.store.servers import read_request, serving

T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
BIND = "127.55.0.1"  # this test module's loopback address


def assigned(registration_id: str = "dev-1") -> RegistrationRecord:
    return RegistrationRecord(
        time=T0, registration_id=registration_id, outcome=Outcome.ASSIGNED, hub="h.net"
    )


def test_shared_key_is_the_sdks_signature() -> None:
    """The Authorization header equals what the SDK's own Shared Key policy signs for the same
    request (method, Content-Type, x-ms-date, path with the account and an escaped key)."""
    rest = TableRest(
        account_url=f"http://127.0.0.1:10002/{ACCOUNT}",
        table="dpsRegistrations",
        credential=AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY),
        api_version="2019-02-02",
        timeout=1,
    )
    date = "Mon, 04 May 2026 10:00:00 GMT"
    for method, path, content_type in [
        ("GET", f"/{ACCOUNT}/dpsRegistrations(PartitionKey='a%2F%27%27b',RowKey='device')", ""),
        ("POST", f"/{ACCOUNT}/$batch", "multipart/mixed; boundary=batch_1"),
    ]:
        request = HttpRequest(
            method,
            f"http://127.0.0.1:10002{path}",
            headers={"x-ms-date": date, "Content-Type": content_type} if content_type else {},
        )
        if not content_type:
            request.headers["x-ms-date"] = date
        policy = SharedKeyCredentialPolicy(AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY))
        policy.on_request(PipelineRequest(request, PipelineContext(None)))
        assert (
            rest._authorization(method, path, content_type, date)
            == (request.headers["Authorization"])
        )


def test_a_sas_connection_string_takes_the_rest_path(azurite: Azurite) -> None:
    """An account SAS instead of a key: the hot path's two requests still go through urllib3,
    and Azurite accepts them."""
    sas = generate_account_sas(
        AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY),
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(read=True, write=True, add=True, update=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    connection_string = (
        f"TableEndpoint=http://127.0.0.1:{azurite.port}/{ACCOUNT};SharedAccessSignature={sas}"
    )
    count = RequestCount()
    store = TableStore(
        connection_string,
        table_prefix=fresh_prefix(),
        timeout_seconds=5,
        session=count.session,
        on_send=count.on_send,
    )
    try:
        store.get_device("warm-up")  # creates the table through the SDK
        http_before = len(count.sent)
        assert store.get_device("dev-1") is None
        store.record_registration(assigned())
        device = store.get_device("dev-1")
        assert device is not None
        assert device.provisioning_count == 1
        assert len(count.sent) - http_before == 3
    finally:
        store.close()


def test_a_wrong_key_is_refused_without_saying_the_key(azurite: Azurite) -> None:
    """Azurite checks the signature: a wrong account key is refused (403, as through the SDK), and
    neither key appears in the message."""
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWs="
    good = TableStore(azurite.connection_string, table_prefix=fresh_prefix(), timeout_seconds=5)
    good.get_device("warm-up")  # the table exists
    bad = TableStore(
        azurite.connection_string.replace(ACCOUNT_KEY, wrong_key),
        table_prefix=good._clients["registry"].table_name.removesuffix("Registrations"),
        timeout_seconds=5,
    )
    bad._ready = True  # the table was created by the good store; go straight to the point read
    try:
        with pytest.raises(StoreError, match="403") as caught:
            bad.get_device("dev-1")
        assert wrong_key not in str(caught.value)
        assert ACCOUNT_KEY not in str(caught.value)
    finally:
        good.close()
        bad.close()


@contextmanager
def raw_server(answer: bytes) -> Iterator[int]:
    """A server on BIND that reads one request, writes `answer` and closes."""

    def handle(conn: socket.socket, index: int, stop: threading.Event) -> None:
        conn.settimeout(5)
        if read_request(conn, bytearray()) is not None:
            conn.sendall(answer)

    with serving(BIND, handle) as port:
        yield port


@contextmanager
def silent_server() -> Iterator[int]:
    """A server on BIND that accepts connections and never answers (a hung Azurite)."""

    def handle(conn: socket.socket, index: int, stop: threading.Event) -> None:
        stop.wait()

    with serving(BIND, handle) as port:
        yield port


def test_an_inline_deadline_bounds_a_request_below_its_timeout() -> None:
    """Inside an inline call_with_deadline, a request to a server that never answers gives up
    when the deadline's time is up, not after the client's own (longer) read timeout."""
    with silent_server() as port:
        rest = TableRest(
            account_url=f"http://{BIND}:{port}/{ACCOUNT}",
            table="t",
            credential=AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY),
            api_version="2019-02-02",
            timeout=30,
        )
        started = time.monotonic()
        with pytest.raises(Unanswered) as caught:
            call_with_deadline(lambda: rest.read("p", "device"), Deadline.after(0.3), inline=True)
        took = time.monotonic() - started
        rest.close()
    assert caught.value.timed_out
    assert 0.25 < took < 5


def test_no_request_is_sent_once_the_deadline_has_passed(azurite: Azurite) -> None:
    """The webhook's read, then its transaction, inline under one deadline: when the time is up
    after the read, the transaction is never sent and the call is a StoreTimeout."""
    count = RequestCount()
    store = TableStore(
        azurite.connection_string,
        table_prefix=fresh_prefix(),
        timeout_seconds=5,
        session=count.session,
        on_send=count.on_send,
    )
    try:
        store.get_device("warm-up")  # creates the table through the SDK
        assert store.bounds_own_calls
        count.sent.clear()
        # A clock that moves past the deadline as soon as the first request has been sent.
        deadline = Deadline.after(1.0, clock=lambda: 10.0 if count.sent else 0.0)
        with pytest.raises(StoreTimeout, match="no time left"):
            call_with_deadline(lambda: store.record_registration(assigned()), deadline, inline=True)
        assert count.sent == ["GET"]
        assert store.get_device("dev-1") is None  # nothing was written
    finally:
        store.close()


def rest_for(port: int) -> TableRest:
    return TableRest(
        account_url=f"http://{BIND}:{port}/{ACCOUNT}",
        table="t",
        credential=AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY),
        api_version="2019-02-02",
        timeout=2,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda status, headers, body: (
                f"HTTP/1.1 {status} X\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            ),
            st.integers(100, 999),
            st.sampled_from(["", 'ETag: W/"e"\r\n', "x-ms-error-code: Nope\r\n"]),
            st.binary(max_size=200),
        ),
    )
)
def test_any_answer_is_an_entity_none_or_a_store_error(answer: bytes) -> None:
    """Whatever bytes come back (garbage, cut short, any status, any body), a read returns an
    entity or None, or raises Unanswered or Refused: nothing else escapes."""
    with raw_server(answer) as port:
        rest = rest_for(port)
        try:
            found = rest.read("p", "device")
        except (Unanswered, Refused):
            return
        finally:
            rest.close()
    assert found is None or isinstance(found, Entity)


def test_an_oversized_answer_is_unanswered() -> None:
    """An answer larger than MAX_ANSWER_BYTES is not read into memory."""
    body = b"x" * (MAX_ANSWER_BYTES + 1)
    head = f'HTTP/1.1 200 OK\r\nETag: W/"e"\r\nContent-Length: {len(body)}\r\n\r\n'.encode()
    with raw_server(head + body) as port:
        rest = rest_for(port)
        with pytest.raises(Unanswered, match="larger than"):
            rest.read("p", "device")
        rest.close()


def test_a_store_over_a_broken_server_raises_store_errors() -> None:
    """Through TableStore, a non-HTTP answer is StoreUnavailable and a malformed entity StoreError,
    with no URL or key in the message."""
    with raw_server(b"SSH-2.0-OpenSSH\r\n") as port:
        store = TableStore(
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://{BIND}:{port}/{ACCOUNT};",
            timeout_seconds=2,
        )
        store._ready = True
        with pytest.raises(StoreUnavailable) as caught:
            store.get_device("dev-1")
        assert ACCOUNT_KEY not in str(caught.value)
        assert BIND not in str(caught.value)
        store.close()
    entity = json.dumps({"registration_id": 5}).encode()
    head = f'HTTP/1.1 200 OK\r\nETag: W/"e"\r\nContent-Length: {len(entity)}\r\n\r\n'.encode()
    with raw_server(head + entity) as port:
        store = TableStore(
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://{BIND}:{port}/{ACCOUNT};",
            timeout_seconds=2,
        )
        store._ready = True
        with pytest.raises(StoreError, match="registration_id"):
            store.get_device("dev-1")
        store.close()


@given(etag=st.one_of(st.none(), st.text(max_size=20)), body=st.binary(max_size=200))
def test_entity_answer_takes_any_bytes(etag: str | None, body: bytes) -> None:
    """Any body and ETag: an Entity holding a JSON object, or Unanswered."""
    try:
        entity = entity_answer(etag, body)
    except Unanswered:
        return
    assert isinstance(entity.properties, dict)
    assert entity.etag == etag


@given(
    header=st.one_of(st.none(), st.text(max_size=100)),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.one_of(st.none(), st.text(max_size=10), st.integers()),
            lambda inner: st.dictionaries(
                st.sampled_from(["odata.error", "code", "message"]), inner, max_size=3
            ),
            max_leaves=6,
        ).map(lambda value: json.dumps(value).encode()),
    ),
)
def test_error_code_takes_any_answer(header: str | None, body: bytes) -> None:
    """The error code is a short string or None, whatever the header and the body hold."""
    code = error_code(header, body)
    assert code is None or (isinstance(code, str) and len(code) <= 64)


def test_error_code_prefers_the_header_then_the_odata_body() -> None:
    """x-ms-error-code first, then odata.error.code."""
    body = json.dumps({"odata.error": {"code": "TableNotFound"}}).encode()
    assert error_code("AuthenticationFailed", body) == "AuthenticationFailed"
    assert error_code(None, body) == "TableNotFound"
    assert error_code(None, b"<xml/>") is None
