"""DynamoDB tables the tests make for themselves."""

from __future__ import annotations

from typing import Any


def hash_table(db: Any, name: str, key: str = "pk") -> str:
    """Create an on-demand table keyed by one string attribute; returns its name."""
    db.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name
