"""The emulator's state saved to a file and restored (stratoq dev --persist)."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.base_backend import BackendDict

from stratoq.local import snapshot
from tests.support.tables import hash_table


def _clients() -> tuple[Any, Any, Any]:
    db, sqs, kms = (boto3.client(s, region_name="us-east-1") for s in ("dynamodb", "sqs", "kms"))
    return db, sqs, kms


@mock_aws
def test_tables_queues_and_keys_come_back_as_they_were(tmp_path: Path) -> None:
    db, sqs, kms = _clients()
    hash_table(db, "t")
    db.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for body in ("held", "waiting"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    [held] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=300)["Messages"]
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    sealed = kms.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    state = tmp_path / "emulator.state"

    assert snapshot.save(state) == []
    assert state.stat().st_mode & 0o777 == 0o600  # it holds payloads and key hashes
    saved = state.read_bytes()
    BackendDict.reset()
    assert db.list_tables()["TableNames"] == []
    assert snapshot.load(state)

    # Moved aside: a stack that dies unsaved starts empty, and a failed save still
    # leaves the restored state on disk.
    assert not state.exists()
    assert state.with_name("emulator.state.restored").read_bytes() == saved
    item = db.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]
    assert item == {"pk": {"S": "a"}, "n": {"N": "1"}}
    assert kms.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"secret"
    # The message in flight stays in flight and can still be deleted by its handle.
    [waiting] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert waiting["Body"] == "waiting"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=held["ReceiptHandle"])
    sqs.send_message(QueueUrl=url, MessageBody="after")  # its lock was recreated
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "1",
        "1",
    )


def test_no_file_means_a_new_emulator(tmp_path: Path) -> None:
    assert snapshot.load(tmp_path / "missing.state") is False


def test_a_damaged_file_is_refused_with_a_sentence_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "emulator.state"
    state.write_bytes(b"not a pickle")
    with pytest.raises(snapshot.SnapshotError, match="damaged; delete it"):
        snapshot.load(state)
    assert state.exists()


def test_a_file_from_another_moto_is_refused_naming_both(tmp_path: Path) -> None:
    state = tmp_path / "emulator.state"
    state.write_bytes(pickle.dumps({"format": snapshot.FORMAT, "moto": "4.0.0"}) + b"anything")
    with pytest.raises(snapshot.SnapshotError, match=r"saved by moto 4\.0\.0 .*this is moto"):
        snapshot.load(state)
    assert state.exists()


def test_a_file_others_may_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "emulator.state"
    state.write_bytes(b"")
    state.chmod(0o666)
    with pytest.raises(snapshot.SnapshotError, match="not yours alone"):
        snapshot.load(state)


@mock_aws
def test_services_sharing_a_name_and_plain_locks_come_back(tmp_path: Path) -> None:
    from moto.sqs.models import sqs_backends

    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    # ec2-instance-connect's backends are also named "ec2"
    boto3.client("ec2-instance-connect", region_name="us-east-1").send_ssh_public_key(
        InstanceId="i-0123456789abcdef0", InstanceOSUser="u", SSHPublicKey="ssh-rsa " + "A" * 80
    )
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.create_queue(QueueName="q")
    sqs_backends["123456789012"]["us-east-1"].held = threading.Lock()
    sqs_backends["123456789012"]["us-east-1"].held.acquire()
    state = tmp_path / "emulator.state"
    assert snapshot.save(state) == []
    BackendDict.reset()
    assert snapshot.load(state)
    assert [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]] == [vpc]
    assert sqs_backends["123456789012"]["us-east-1"].held.acquire(blocking=False)  # unheld


@mock_aws
def test_a_service_that_cannot_be_saved_is_left_out_and_the_rest_kept(tmp_path: Path) -> None:
    boto3.client("ssm", region_name="us-east-1").describe_parameters()  # holds closures
    db, _, _ = _clients()
    hash_table(db, "kept")
    state = tmp_path / "emulator.state"
    assert snapshot.save(state) == ["ssm"]
    BackendDict.reset()
    assert snapshot.load(state)
    assert db.list_tables()["TableNames"] == ["kept"]
