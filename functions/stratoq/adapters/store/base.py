"""What every part of the task store shares: the table, its client, the payload cipher,
retention and the idempotency window, and reading one task by id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stratoq.adapters.crypto import PayloadCipher
from stratoq.adapters.store.codec import item_to_task, load
from stratoq.core.models import Task

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000


class StoreBase:
    """The task table and its settings; the store's parts (records, listing, leases,
    transitions) extend it and `TaskStore` combines them."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        retention_days: int = 30,
        idempotency_window_ms: int = IDEMPOTENCY_WINDOW_MS,
        cipher: PayloadCipher | None = None,
    ) -> None:
        self._db = client
        self.table = table
        # Encrypts payloads and results (None: stored in clear; see crypto.cipher_for).
        self.cipher = cipher
        self._retention_ms = retention_days * 24 * 3600 * 1000
        self._idem_window_ms = idempotency_window_ms

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client; other repositories of this table (locks) share it."""
        return self._db

    def get(self, task_id: str, tenant: str | None = None) -> Task | None:
        """The task, or None. With `tenant`, another tenant's task is None too."""
        out = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": task_id}}, ConsistentRead=True
        )
        if "Item" not in out:
            return None
        item = load(out["Item"])
        if "name" not in item or (tenant is not None and item.get("tenant") != tenant):
            return None
        return item_to_task(item, self.cipher)
