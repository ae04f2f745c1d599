"""The embedded emulator judges conditional writes atomically, as DynamoDB does.

Claims, fenced completions and locks all rest on "of two racing conditional writes to
one item, at most one passes". Stock moto does not hold it (no locking in its DynamoDB
backend); stratoq.local.moto_patches serialises its requests. Without the patch this
test sees several winners in most rounds.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from stratoq.adapters import aws
from stratoq.core.settings import Settings
from tests.support.tables import hash_table

RACERS = 8
ROUNDS = 20


@pytest.fixture
def table(emulator: str) -> Iterator[str]:
    db = aws.dynamodb(Settings(aws_endpoint_url=emulator))
    name = hash_table(db, "atomicity-test")
    # Switch threads often, so that racing requests interleave inside the emulator.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield name
    sys.setswitchinterval(interval)
    db.delete_table(TableName=name)


def test_of_racing_conditional_writes_to_one_item_exactly_one_passes(
    emulator: str, table: str
) -> None:
    clients: list[object] = [
        aws.dynamodb(Settings(aws_endpoint_url=emulator)) for _ in range(RACERS)
    ]
    for round_ in range(ROUNDS):
        outcomes = race_once(clients, table, f"lock-{round_}")
        assert all(o in ("passed", "ConditionalCheckFailedException") for o in outcomes)
        assert outcomes.count("passed") == 1, f"round {round_}: {outcomes}"


def race_once(clients: list[object], table: str, key: str) -> list[str]:
    """Every client tries to take one free item at the same moment; what each got."""
    outcomes: list[str] = []
    barrier = threading.Barrier(len(clients))

    def race(client: object) -> None:
        barrier.wait()
        try:
            client.update_item(  # type: ignore[attr-defined]
                TableName=table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET lock_until = :until",
                ConditionExpression="attribute_not_exists(pk) OR lock_until <= :now",
                ExpressionAttributeValues={":until": {"N": "2000"}, ":now": {"N": "1000"}},
            )
            outcomes.append("passed")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=race, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes
