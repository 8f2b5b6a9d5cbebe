"""The entity-group transaction body and its answer, without a network (Azurite runs the rest in
the contract suite)."""

from __future__ import annotations

import pytest

from store.changeset import MAX_OPERATIONS, Change, changeset_body, part_statuses

URL = "http://127.0.0.1:10002/devstoreaccount1"


def test_body_has_one_part_per_operation_with_its_method_and_key() -> None:
    """Upsert is a PUT, create a POST, update a PUT with If-Match; keys are quoted for the URL."""
    content_type, body = changeset_body(
        URL,
        "dpsRegistrations",
        [
            Change("upsert", {"PartitionKey": "it's/1", "RowKey": "0001-ab", "n": 1.5}),
            Change("create", {"PartitionKey": "it's/1", "RowKey": "device", "ok": True}),
            Change("update", {"PartitionKey": "d", "RowKey": "device"}, etag='W/"x"'),
        ],
    )
    text = body.decode()
    batch = content_type.split("boundary=")[1]
    assert text.startswith(f"--{batch}\r\n")
    assert text.endswith(f"--{batch}--\r\n")
    assert (
        f"PUT {URL}/dpsRegistrations(PartitionKey='it%27%27s%2F1',RowKey='0001-ab') HTTP/1.1"
        in text
    )
    assert f"POST {URL}/dpsRegistrations HTTP/1.1" in text
    assert 'If-Match: W/"x"' in text
    assert '"n@odata.type": "Edm.Double"' in text  # the SDK's own entity serialisation
    assert text.count("Content-Type: application/http") == 3


@pytest.mark.parametrize(
    "changes",
    [
        [],
        [
            Change("upsert", {"PartitionKey": "p", "RowKey": str(n)})
            for n in range(MAX_OPERATIONS + 1)
        ],
    ],
)
def test_a_transaction_holds_1_to_100_operations(changes: list[Change]) -> None:
    """The service's limits are checked before anything is sent."""
    with pytest.raises(ValueError, match="1 to 100 operations"):
        changeset_body(URL, "t", changes)


def test_an_update_needs_an_etag() -> None:
    """An update without the etag it must match would overwrite blindly: refused."""
    with pytest.raises(ValueError, match="etag"):
        changeset_body(URL, "t", [Change("update", {"PartitionKey": "p", "RowKey": "r"})])


def test_part_statuses_read_each_answer_part() -> None:
    """One status per part, success or the single failing part."""
    answer = (
        "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 412 Precondition Failed\r\n"
        'Content-Type: application/json\r\n\r\n{"odata.error": {"code": "UpdateConditionNotSatisfied"}}\r\n'
        "--changesetresponse_2--\r\n--batchresponse_1--\r\n"
    )
    assert part_statuses(answer) == [204, 412]
    assert part_statuses("") == []
