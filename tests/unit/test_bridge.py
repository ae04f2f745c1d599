"""Broker identities as idempotency keys, and the bridge's deployment in template.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stratoq.core.errors import ConfigError
from stratoq.local.provision import local_template, translate
from stratoq.runtime.rabbitmq import safe_url, vhost_of
from stratoq.services.bridge import MAX_KEY_CHARS, check_tenant, kafka_key, rabbitmq_key

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


# ------------------------------------------------------------------------ keys
def test_a_kafka_record_keeps_its_key_and_neighbours_differ() -> None:
    key = kafka_key("orders", 3, 15, 1545084650987)
    assert key == kafka_key("orders", 3, 15, 1545084650987)
    others = {
        kafka_key("orders", 3, 16, 1545084650987),
        kafka_key("orders", 4, 15, 1545084650987),
        kafka_key("orders2", 3, 15, 1545084650987),
        kafka_key("orders", 3, 15, 1545084650988),  # the topic was recreated
    }
    assert key not in others and len(others) == 4


def test_keys_never_exceed_the_idempotency_key_limit() -> None:
    long_topic = "t" * 249  # Kafka's longest topic name
    key = kafka_key(long_topic, 1, 2, 3)
    assert len(key) <= MAX_KEY_CHARS
    assert key != kafka_key(long_topic, 1, 2, 4)
    long_id = rabbitmq_key("q::/", "m" * 300, b"{}")
    assert len(long_id) <= MAX_KEY_CHARS
    assert long_id != rabbitmq_key("q::/", "m" * 301, b"{}")


def test_a_redelivered_rabbitmq_message_keeps_its_key() -> None:
    body = b'{"name": "echo"}'
    assert rabbitmq_key("q::/", "id-1", body) == "amqp:q::/#id-1"
    # message_id names the message, whatever the body says on a publisher's retry.
    assert rabbitmq_key("q::/", "id-1", b"other") == rabbitmq_key("q::/", "id-1", body)
    # Without one: queue, correlation id and body, which a redelivery repeats.
    anonymous = rabbitmq_key("q::/", None, body, "c-1")
    assert anonymous == rabbitmq_key("q::/", None, body, "c-1")
    assert anonymous != rabbitmq_key("q::/", None, body, "c-2")
    assert anonymous != rabbitmq_key("r::/", None, body, "c-1")
    assert anonymous != rabbitmq_key("q::/", None, body + b" ", "c-1")
    # The same message_id on two queues is two messages.
    assert rabbitmq_key("q::/", "id-1", body) != rabbitmq_key("r::/", "id-1", body)


def test_a_queue_name_with_the_separator_cannot_collide() -> None:
    assert rabbitmq_key("a#b::/", "c", b"") != rabbitmq_key("a::/", "b#c", b"")


def test_the_bridge_tenant_must_be_a_tenant_name() -> None:
    assert check_tenant("acme-1") == "acme-1"
    with pytest.raises(ConfigError, match="STRATOQ_BRIDGE_TENANT"):
        check_tenant("no spaces")


def test_urls_lose_their_credentials_in_logs() -> None:
    url = "amqps://bridge:s3cret@mq.example.com:5671/prod%2Fa"
    assert safe_url(url) == "amqps://mq.example.com:5671/prod%2Fa"
    assert vhost_of(url) == "prod/a"
    assert vhost_of("amqp://h/") == vhost_of("amqp://h") == "/"
    assert vhost_of("amqp://h/%2F") == "/"


# -------------------------------------------------------------------- template
@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate(TEMPLATE)


def test_event_sources_exist_only_when_configured(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    assert (
        res["IngestFunction"]["Properties"]["Handler"] == "stratoq.handlers.ingest.lambda_handler"
    )
    conditional = {
        "IngestRabbitMqEventSource": "HasRabbitMqBridge",
        "IngestRabbitMqPolicy": "HasRabbitMqBridge",
        "IngestMskEventSource": "HasMskBridge",
        "IngestMskPolicy": "HasMskBridge",
    }
    for name, condition in conditional.items():
        assert res[name]["Condition"] == condition, name
    # Every broker parameter defaults to empty: no event source unless one is given.
    params = cfn["Parameters"]
    for p in ("RabbitMqBrokerArn", "RabbitMqQueue", "RabbitMqSecretArn", "MskClusterArn"):
        assert params[p]["Default"] == "", p
    # A mapping is created after the permissions it checks at creation.
    assert res["IngestRabbitMqEventSource"]["DependsOn"] == "IngestRabbitMqPolicy"
    assert res["IngestMskEventSource"]["DependsOn"] == "IngestMskPolicy"
    rmq = res["IngestRabbitMqEventSource"]["Properties"]
    assert {"Type": "BASIC_AUTH", "URI": {"Ref": "RabbitMqSecretArn"}} in rmq[
        "SourceAccessConfigurations"
    ]


def test_the_ingest_role_only_enqueues(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"]["IngestFunctionRole"]["Properties"]
    actions = {
        a
        for policy in role["Policies"]
        for st in policy["PolicyDocument"]["Statement"]
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    assert actions == {
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "sqs:SendMessage",
        "sqs:GetQueueUrl",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    # The broker's secret: only the configured one.
    policy = cfn["Resources"]["IngestRabbitMqPolicy"]["Properties"]["PolicyDocument"]
    secrets = [st for st in policy["Statement"] if st["Action"] == "secretsmanager:GetSecretValue"]
    assert [st["Resource"] for st in secrets] == [{"Ref": "RabbitMqSecretArn"}]


def test_the_local_stack_leaves_the_bridge_out(cfn: dict[str, Any]) -> None:
    local = local_template(cfn)["Resources"]
    assert not [name for name in local if name.startswith("Ingest")]
