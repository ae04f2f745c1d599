"""The top-level package: every public name resolves, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stratoq


def test_every_public_name_resolves_to_its_definition() -> None:
    from stratoq.core.errors import Retry
    from stratoq.sdk.client import Client

    for name in stratoq.__all__:
        assert getattr(stratoq, name) is not None, name
    assert stratoq.Retry is Retry
    assert stratoq.Client is Client
    assert set(stratoq.__all__) <= set(dir(stratoq))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = stratoq.NoSuchThing  # type: ignore[attr-defined]


def test_the_cli_and_the_sdk_start_without_the_aws_sdk() -> None:
    # Every CLI command imports stratoq; boto3 and botocore's client are 0.4 s of a start
    # (the CLI's error mapping takes only botocore.exceptions, about 20 ms).
    code = (
        "import sys, stratoq, stratoq.cli.main, stratoq.sdk.client; "
        "print(sorted(m for m in ('boto3', 'botocore.client') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
