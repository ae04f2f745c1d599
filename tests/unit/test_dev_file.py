"""The SDK finds `.stratoq/dev.json` as git finds `.git`: here, then in each parent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stratoq import Client
from stratoq.core.errors import ConfigError
from stratoq.sdk.client import dev_config

FACTS = {"api_url": "http://127.0.0.1:1/v1", "api_key": "sq_dev", "metrics_url": ""}


@pytest.fixture(autouse=True)
def no_api_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRATOQ_API_URL", "STRATOQ_API_KEY", "STRATOQ_DEV_FILE", "STRATOQ_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def write(project: Path, facts: dict[str, str]) -> Path:
    (project / ".stratoq").mkdir(parents=True)
    path = project / ".stratoq" / "dev.json"
    path.write_text(json.dumps(facts))
    return path


def nowhere(tmp_path: Path) -> Path:
    """A directory with no dev.json in it or above it."""
    here = tmp_path / "elsewhere" / "deeper"
    here.mkdir(parents=True)
    above = [p for p in (here, *here.parents) if (p / ".stratoq" / "dev.json").exists()]
    assert not above, f"a dev.json above the test's directory spoils it: {above}"
    return here


def test_a_subdirectory_finds_the_projects_dev_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "project", FACTS)
    deep = tmp_path / "project" / "src" / "app"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    client = Client()
    assert (client.api_url, dev_config()["api_key"]) == ("http://127.0.0.1:1/v1", "sq_dev")


def test_the_nearest_dev_json_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "outer", FACTS)
    write(tmp_path / "outer" / "inner", {**FACTS, "api_url": "http://127.0.0.1:2/v1"})
    monkeypatch.chdir(tmp_path / "outer" / "inner")
    assert Client().api_url == "http://127.0.0.1:2/v1"


def test_a_relative_ca_bundle_is_relative_to_dev_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = write(tmp_path, {**FACTS, "ca_bundle": "tls/ca.pem"})
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert dev_config()["ca_bundle"] == str(written.parent / "tls" / "ca.pem")
    write(tmp_path / "abs", {**FACTS, "ca_bundle": "/etc/ca.pem"})
    monkeypatch.chdir(tmp_path / "abs")
    assert dev_config()["ca_bundle"] == "/etc/ca.pem"


def test_none_found_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = nowhere(tmp_path)
    monkeypatch.chdir(here)
    assert dev_config() == {}
    with pytest.raises(ConfigError) as err:
        Client()
    assert str(err.value) == (
        "no API configured: set STRATOQ_API_URL and STRATOQ_API_KEY, pass the URL and key "
        "(--api-url/--api-key, or Client(api_url, api_key)), or start `stratoq dev`; "
        f"looked for .stratoq/dev.json in {here} and its parents"
    )
    # A URL alone is not enough either, and the error still says where it looked.
    monkeypatch.setenv("STRATOQ_API_URL", "http://127.0.0.1:1/v1")
    with pytest.raises(
        ConfigError, match=re.escape(f"looked for .stratoq/dev.json in {here} and its")
    ):
        Client()


def test_stratoq_dev_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = write(tmp_path / "named", FACTS)
    write(tmp_path / "cwd", {**FACTS, "api_url": "http://127.0.0.1:2/v1"})
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("STRATOQ_DEV_FILE", str(named))
    assert Client().api_url == "http://127.0.0.1:1/v1"
    missing = tmp_path / "missing.json"
    monkeypatch.setenv("STRATOQ_DEV_FILE", str(missing))
    with pytest.raises(
        ConfigError, match=re.escape(f"looked for {missing} (named by STRATOQ_DEV_FILE)")
    ):
        Client()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "cannot read {path}: Expecting property name"),
        ("[1]", "{path} is not a JSON object"),
        ('{"api_url": "http://127.0.0.1:1/v1"}', "{path} has no api_key"),
    ],
)
def test_a_broken_dev_json_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, says: str
) -> None:
    path = write(tmp_path, {})
    path.write_text(text)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(ConfigError) as err:
        Client()
    assert "`stratoq dev`; " + says.format(path=path) in str(err.value)
