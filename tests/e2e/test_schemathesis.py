"""schemathesis against the OpenAPI spec the running dev stack serves.

Property-based requests with the admin key: the spec's examples, then 15 generated
valid and invalid requests per operation (fixed seed; about 20 s). Every answer must be
a non-5xx with a documented status code, content type and schema. Revoking keys is left
out: the run would revoke its own key (the authorization tests cover that route).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DevStack, start_dev, stop_dev

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with pytest.MonkeyPatch.context() as env:
        # The fuzzer is one client sending as fast as it can: no per-key throttling here.
        env.setenv("STRATOQ_API_RATE_LIMIT", "100000")
        env.setenv("STRATOQ_API_BURST_LIMIT", "100000")
        dev = start_dev(tmp_path_factory.mktemp("fuzz"))
    try:
        yield dev
    finally:
        assert stop_dev(dev) == 0, dev.log.read_text()[-3000:]


def test_the_api_conforms_to_its_spec(stack: DevStack, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    out = subprocess.run(
        [
            st,
            "run",
            f"{stack.api_url}/v1/openapi.json",
            "--url",
            stack.api_url,
            "--header",
            f"x-api-key: {stack.api_key}",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "15",
            # One worker: hypothesis describes strategies with ast.parse, which is not
            # thread-safe on Python 3.11 (SystemError with concurrent workers).
            "--workers",
            "1",
            "--seed",
            "20261128",
            "--generation-database",
            "none",
            "--exclude-operation-id",
            "revoke_key_v1_keys__key_id__delete",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    # Every selected operation was exercised (schemathesis's own count, so that a new
    # route needs no edit here), and none of this API's was lost on the way.
    selected = re.search(r"Selected: (\d+)/\d+", out.stdout)
    tested = re.search(r"Tested: (\d+)", out.stdout)
    assert selected and tested and " passed" in out.stdout, report
    assert tested.group(1) == selected.group(1), report
    assert int(tested.group(1)) >= 17, report
