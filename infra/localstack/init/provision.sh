#!/usr/bin/env bash
# docker-compose's provision step: create template.yaml's tables and queues on LocalStack
# as a CloudFormation stack (`stratoq provision`), then, when STRATOQ_BOOTSTRAP_KEY is
# set, store that admin API key. Idempotent: running it again changes nothing.
#
# Environment: STRATOQ_AWS_ENDPOINT_URL (required, e.g. http://localstack:4566),
# STRATOQ_STACK (default stratoq), STRATOQ_BOOTSTRAP_KEY (optional, sq_<12 hex>_<secret>),
# STRATOQ_CLI (default stratoq), PYTHON (default python).
set -euo pipefail

: "${STRATOQ_AWS_ENDPOINT_URL:?set STRATOQ_AWS_ENDPOINT_URL to the LocalStack endpoint}"
STACK="${STRATOQ_STACK:-stratoq}"
STRATOQ_CLI="${STRATOQ_CLI:-stratoq}"
PYTHON="${PYTHON:-python}"

errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT

# LocalStack may still be starting, and it creates stacks asynchronously (`provision`
# reports a stack still being created as an error): ask again for up to two minutes.
provisioned=""
for attempt in $(seq 1 60); do
  if out="$("$STRATOQ_CLI" provision --stack "$STACK" 2>"$errors")"; then
    provisioned="$out"
    break
  fi
  if ! grep -qiE "IN_PROGRESS|reach|connect" "$errors"; then
    cat "$errors" >&2
    echo "provision: failed on attempt $attempt" >&2
    exit 1
  fi
  sleep 2
done
if [[ -z "$provisioned" ]]; then
  cat "$errors" >&2
  echo "provision: stack $STACK not ready after 120 s" >&2
  exit 1
fi
echo "$provisioned"
eval "$provisioned"
echo "provision: stack $STACK ready at $STRATOQ_AWS_ENDPOINT_URL" >&2

if [[ -n "${STRATOQ_BOOTSTRAP_KEY:-}" ]]; then
  "$PYTHON" -c '
import os

from stratoq.adapters import aws
from stratoq.adapters.keys import KeyStore
from stratoq.core.settings import Settings

settings = Settings.from_env()
_, record = KeyStore(aws.dynamodb(settings), settings.keys_table).create(
    "admin", ["admin"], "bootstrap", key=os.environ["STRATOQ_BOOTSTRAP_KEY"]
)
print(f"provision: admin key {record.key_id} (tenant {record.tenant}) is stored")
'
fi
