"""A tenant's MessageGroupId: SQS accepts 1 to 128 alphanumeric or punctuation characters."""

from __future__ import annotations

import re

import pytest

from stratoq.adapters.keys import TENANT_PATTERN
from stratoq.adapters.transport import group_id

SQS_GROUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")


@pytest.mark.parametrize("tenant", ["default", "acme", "a.b-c_d", "A" + "x" * 63])
def test_a_tenant_id_the_api_admits_is_its_own_group(tenant: str) -> None:
    assert TENANT_PATTERN.match(tenant)
    assert group_id(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", "with space", "caf\u00e9", "x" * 129, "tab\there"])
def test_any_other_tenant_maps_to_a_valid_group_of_its_own(tenant: str) -> None:
    group = group_id(tenant)
    assert SQS_GROUP_ID.fullmatch(group)
    assert group == group_id(tenant)  # one tenant, one group
    assert group != group_id(tenant + "!")
