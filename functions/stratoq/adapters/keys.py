"""API keys: random secrets shown once, stored only as SHA-256 hashes, scoped per tenant.

A key looks like `sq_<key_id>_<secret>`. The table is keyed by the hash of the whole
key, so checking a key is one GetItem and the stored hash never reveals it. Keys are
256-bit random values, so a fast hash is the right one (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stratoq.core.errors import ConfigError, InvalidRequestError, KeyNotFoundError

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from stratoq.core.settings import Settings

logger = logging.getLogger(__name__)

SCOPES = ("tasks:read", "tasks:write", "admin")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_PATTERN = re.compile(r"^sq_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    scopes: tuple[str, ...]
    name: str
    created_at: int
    revoked: bool = False

    def allows(self, scope: str) -> bool:
        """`admin` implies every scope; `tasks:write` implies `tasks:read`."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        return scope == "tasks:read" and "tasks:write" in self.scopes

    def public(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "scopes": list(self.scopes),
            "name": self.name,
            "created_at": self.created_at,
            "revoked": self.revoked,
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key_id, key). The key_id is public; the key is shown once."""
    key_id = secrets.token_hex(6)
    return key_id, f"sq_{key_id}_{secrets.token_urlsafe(32)}"


def manages_every_tenant(caller_tenant: str, operator_tenant: str) -> bool:
    """Whether an admin key of `caller_tenant` may manage the keys of other tenants.

    Only the operator tenant's admin keys may (STRATOQ_OPERATOR_TENANT, the tenant of
    the bootstrap key). Any other tenant's admin key (admin is also the scope of
    schedules) manages its own tenant's keys only: it can neither mint a key for another
    tenant nor list or revoke one.
    """
    return caller_tenant == operator_tenant


def validate_scopes(scopes: list[str]) -> tuple[str, ...]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidRequestError(
            f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}"
        )
    return tuple(dict.fromkeys(scopes))


def usage_identifier(plan_name: str, key_id: str) -> str:
    """The value of a key's twin in the usage plan (what API Gateway meters it under)."""
    return hashlib.sha256(f"{plan_name}/{key_id}".encode()).hexdigest()


class UsagePlanKeys:
    """API Gateway API keys that twin stratoq keys, so that a usage plan throttles each key.

    API Gateway throttles per API key only for keys of its own, attached to a usage plan.
    The stack's API takes the key from the authorizer (ApiKeySourceType AUTHORIZER): the
    authorizer answers with `usageIdentifierKey`, the twin's value, for the stratoq key it
    accepted. Clients never see or send twins; the value is derived from the plan name and
    the public key id, so the authorizer needs no lookup to name it.
    """

    def __init__(
        self, client: APIGatewayClient, plan_name: str, plan_id: str | None = None
    ) -> None:
        self._gw = client
        self.plan_name = plan_name
        self._plan_id = plan_id

    def identifier(self, key_id: str) -> str:
        return usage_identifier(self.plan_name, key_id)

    def _twin_name(self, key_id: str) -> str:
        return f"{self.plan_name}-{key_id}"

    def plan_id(self) -> str:
        # Looked up by name: passing the id in would make the API function depend on the
        # plan, which depends on the API's stage, which depends on the function.
        if self._plan_id is None:
            pages = self._gw.get_paginator("get_usage_plans").paginate()
            ids = [
                p["id"]
                for page in pages
                for p in page.get("items", [])
                if p.get("name") == self.plan_name
            ]
            if not ids:
                raise ConfigError(f"no API Gateway usage plan named {self.plan_name!r}")
            self._plan_id = ids[0]
        return self._plan_id

    def add(self, key_id: str) -> str:
        """Create the twin of `key_id` in the plan; returns the twin's id (kept with the key,
        so that revoking needs no listing of the account's API keys)."""
        plan = self.plan_id()
        twin = self._gw.create_api_key(
            name=self._twin_name(key_id),
            description="stratoq key twin for per-key throttling; not usable by clients",
            enabled=True,
            value=self.identifier(key_id),
        )["id"]
        try:
            self._gw.create_usage_plan_key(usagePlanId=plan, keyId=twin, keyType="API_KEY")
        except Exception:
            self.remove(twin)
            raise
        return twin

    def remove(self, twin_id: str) -> None:
        """Delete a twin (gone already is fine)."""
        try:
            self._gw.delete_api_key(apiKey=twin_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NotFoundException":
                raise


class KeyStore:
    """API keys in their own DynamoDB table (partition key `pk` = hash of the key).

    With `usage`, each key gets an API Gateway twin in the stack's usage plan, created
    before the key is stored (a stored key without its twin would be refused by API
    Gateway) and deleted after it is revoked.
    """

    def __init__(
        self, client: DynamoDBClient, table: str, usage: UsagePlanKeys | None = None
    ) -> None:
        self._db = client
        self.table = table
        self.usage = usage

    def create(
        self, tenant: str, scopes: list[str], name: str = "", key: str | None = None
    ) -> tuple[str, ApiKey]:
        """Store a new key (or the given one, for a fixed bootstrap key); returns it once."""
        if not TENANT_PATTERN.match(tenant):
            raise InvalidRequestError(f"tenant {tenant!r} must match {TENANT_PATTERN.pattern}")
        valid = validate_scopes(scopes)
        if key is None:
            key_id, key = new_key()
        else:
            m = _KEY_PATTERN.match(key)
            key_id = m.group(1) if m else hash_key(key)[:12]
            existing = self.lookup(key)
            if existing is not None:
                return key, existing  # a fixed key given again: it has its twin already
        record = ApiKey(key_id, tenant, valid, name[:128], int(time.time()))
        item: dict[str, Any] = {
            "pk": {"S": hash_key(key)},
            "key_id": {"S": key_id},
            "tenant": {"S": tenant},
            "scopes": {"S": " ".join(valid)},
            "name": {"S": record.name},
            "created_at": {"N": str(record.created_at)},
            "revoked": {"BOOL": False},
        }
        twin = self.usage.add(key_id) if self.usage is not None else None
        if twin is not None:
            item["usage_key_id"] = {"S": twin}
        try:
            self._db.put_item(
                TableName=self.table,
                Item=item,
                # Guards against replacing an existing key's tenant or scopes (a fixed
                # bootstrap key given twice keeps what it was created with).
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if twin is not None and self.usage is not None:
                self.usage.remove(twin)  # not stored: its twin would only take up quota
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            existing = self.lookup(key)
            if existing is None:
                raise InvalidRequestError("that key was revoked; choose another") from None
            return key, existing
        return key, record

    def lookup(self, key: str) -> ApiKey | None:
        """The live key record for a presented key, or None (unknown or revoked)."""
        if not key or len(key) > 256:
            return None
        digest = hash_key(key)
        out = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": digest}}, ConsistentRead=True
        )
        item = out.get("Item")
        # The lookup is by hash; comparing again in constant time keeps timing flat
        # whatever the table returned.
        if item is None or not hmac.compare_digest(item["pk"]["S"], digest):
            return None
        record = _record(item)
        return None if record.revoked else record

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """All keys (admin only; the table is small), newest first."""
        items: list[Any] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            out = self._db.scan(**kwargs)
            items.extend(out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                break
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        keys = [_record(i) for i in items]
        if tenant is not None:
            keys = [k for k in keys if k.tenant == tenant]
        return sorted(keys, key=lambda k: k.created_at, reverse=True)

    def revoke(self, key_id: str, tenant: str | None = None) -> ApiKey:
        """Revoke a key by its public id; effective for the next request.

        With `tenant`, a key of another tenant is reported missing (KeyNotFoundError).
        """
        out = self._db.scan(
            TableName=self.table,
            FilterExpression="key_id = :k",
            ExpressionAttributeValues={":k": {"S": key_id}},
        )
        items = out.get("Items", [])
        while not items and "LastEvaluatedKey" in out:
            out = self._db.scan(
                TableName=self.table,
                FilterExpression="key_id = :k",
                ExpressionAttributeValues={":k": {"S": key_id}},
                ExclusiveStartKey=out["LastEvaluatedKey"],
            )
            items = out.get("Items", [])
        if tenant is not None:
            items = [i for i in items if i.get("tenant", {}).get("S") == tenant]
        if not items:
            raise KeyNotFoundError(f"no key {key_id}")
        self._db.update_item(
            TableName=self.table,
            Key={"pk": items[0]["pk"]},
            UpdateExpression="SET revoked = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )
        revoked = _record({**items[0], "revoked": {"BOOL": True}})
        twin = items[0].get("usage_key_id", {}).get("S")
        if self.usage is not None and twin:
            # The key is already refused by the authorizer; the twin is only bookkeeping.
            try:
                self.usage.remove(twin)
            except Exception:
                logger.exception("deleting the usage plan twin failed", extra={"key_id": key_id})
        return revoked


def key_store(settings: Settings) -> KeyStore:
    """The keys table, with usage plan twins where the settings name a plan (AWS)."""
    from stratoq.adapters import aws

    usage = None
    if settings.usage_plan:
        usage = UsagePlanKeys(aws.apigateway(settings), settings.usage_plan)
    return KeyStore(aws.dynamodb(settings), settings.keys_table, usage)


@dataclass(frozen=True)
class Bootstrapped:
    """A key stored by `bootstrap`: the key itself (shown once), its record, its table."""

    key: str
    record: ApiKey
    table: str


def bootstrap(
    settings: Settings,
    stack: str,
    tenant: str,
    scopes: list[str],
    name: str = "bootstrap",
    key: str | None = None,
) -> Bootstrapped:
    """Store a key straight in a deployed stack's keys table (its KeysTableName output),
    with its usage plan twin where the stack has one (UsagePlanId, on AWS).

    This is how the first admin key exists: it needs AWS credentials that may write the
    table, not an API key. With `key`, that key is stored instead of a new one, and
    storing it again is harmless. The tenant and scopes are checked before AWS is asked.
    """
    from stratoq.adapters import aws

    if not TENANT_PATTERN.match(tenant):
        raise InvalidRequestError(f"tenant {tenant!r} must match {TENANT_PATTERN.pattern}")
    validate_scopes(scopes)
    outputs = aws.stack_outputs(settings, stack)
    table = outputs.get("KeysTableName")
    if not table:
        raise ConfigError(
            f"stack {stack} has no KeysTableName output: is it a stratoq stack, "
            "deployed from stratoq's template.yaml?"
        )
    usage = None
    plan_id = outputs.get("UsagePlanId")
    if plan_id:
        # On AWS each key needs its twin in the per-key usage plan (docs/security.md).
        gateway = aws.apigateway(settings)
        plan_name = gateway.get_usage_plan(usagePlanId=plan_id)["name"]
        usage = UsagePlanKeys(gateway, plan_name, plan_id=plan_id)
    stored, record = KeyStore(aws.dynamodb(settings), table, usage).create(
        tenant, scopes, name, key=key
    )
    return Bootstrapped(stored, record, table)


def _record(item: dict[str, Any]) -> ApiKey:
    return ApiKey(
        key_id=item["key_id"]["S"],
        tenant=item["tenant"]["S"],
        scopes=tuple(item["scopes"]["S"].split()),
        name=item.get("name", {}).get("S", ""),
        created_at=int(item["created_at"]["N"]),
        revoked=item.get("revoked", {}).get("BOOL", False),
    )
