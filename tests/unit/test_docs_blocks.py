"""How tests/e2e/test_docs_commands.py reads the documents' code blocks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.docs import Placeholders, blocks

DOC = """# A page

```sh
stratoq enqueue echo   # prints the task
stratoq enqueue cpu --payload '{"a": "x #1"}' \\
    --wait 60          # exit 1: it fails
```

<!-- docs-test: skip (needs an AWS account) -->
```sh
sam deploy
```

1. A list item:

   <!-- docs-test: skip `make prometheus` (a fixed port) -->
   ```sh
   stratoq top
   make prometheus
   ```

```python
# myapp/tasks.py
import stratoq
```

```json
{"name": "x"}
```
"""


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.md"
    path.write_text(DOC)
    return path


def test_commands_continuations_and_expected_exits(page: Path) -> None:
    first = blocks(page)[0]
    commands = list(first.commands())
    assert [(c.line, c.expected_exit) for c in commands] == [(4, 0), (5, 1)]
    assert commands[1].text.endswith("--wait 60          # exit 1: it fails")


def test_markers_skip_a_block_or_its_commands_with_a_reason(page: Path) -> None:
    found = blocks(page)
    assert [b.lang for b in found] == ["sh", "sh", "sh", "python"]
    assert found[1].skipped and found[1].skip_reason == "needs an AWS account"
    indented = found[2]
    assert not indented.skipped
    assert [c.text for c in indented.commands()] == ["stratoq top"]
    assert found[3].module_path == "myapp/tasks.py"


def test_a_marker_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text("<!-- docs-test: skip -->\n```sh\nls\n```\n")
    with pytest.raises(ValueError, match="unknown docs-test marker"):
        blocks(path)


@pytest.mark.parametrize(
    ("command", "until_stopped"),
    [
        ("stratoq worker -c 4 --tasks myapp.tasks", True),
        ("stratoq top", True),
        ("stratoq top --once -n 1", False),
        ("stratoq top --json", False),
        ("X=1 stratoq bridge rabbitmq --queue tasks", True),
        ("stratoq --aws-endpoint-url http://x provision", False),
        ("stratoq enqueue echo", False),
    ],
)
def test_commands_that_run_until_stopped(tmp_path: Path, command: str, until_stopped: bool) -> None:
    path = tmp_path / "page.md"
    path.write_text(f"```sh\n{command}\n```\n")
    [cmd] = blocks(path)[0].commands()
    assert cmd.runs_until_stopped is until_stopped


def test_placeholders_take_what_earlier_commands_printed() -> None:
    held = Placeholders()
    held.saw('{"id": "01aa00000000000000000001", "status": "queued"}')
    held.saw('{\n  "id": "01aa00000000000000000002"\n}')
    held.saw("sq_abc_secret\nkey_id abc, tenant acme, scopes tasks:read")
    assert held.fill("stratoq status ID") == "stratoq status 01aa00000000000000000002"
    assert held.fill("curl .../v1/tasks/<id>") == "curl .../v1/tasks/01aa00000000000000000002"
    assert held.fill("stratoq wait ID1 ID2") == (
        "stratoq wait 01aa00000000000000000001 01aa00000000000000000002"
    )
    assert held.fill("stratoq keys revoke KEY_ID") == "stratoq keys revoke abc"
    with pytest.raises(AssertionError, match="no task id"):
        Placeholders().fill("stratoq status ID")


@pytest.mark.parametrize(
    "doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_every_skip_in_the_docs_says_why(doc: Path) -> None:
    for block in blocks(doc):  # an unknown or reasonless marker raises
        if block.skip_reason is not None:
            assert len(block.skip_reason.split()) >= 3, f"{doc}:{block.line}"


def test_task_bodies_in_the_docs_name_example_tasks() -> None:
    # The JSON bodies are not run; a reader who posts one must still get a task that
    # the dev stack (stratoq.examples) runs.
    source = (ROOT / "functions" / "stratoq" / "examples.py").read_text()
    examples = set(re.findall(r'@task\("([\w-]+)"\)', source))
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```json\n(.*?)```", doc.read_text(), re.S):
            for name in re.findall(r'^\{"(?:id": "[^"]*", ")?name": "([^"]+)"', block, re.M):
                assert name in examples, f"{doc.name}: task {name!r} is not in stratoq.examples"


@pytest.mark.parametrize(
    ("command", "refused"),
    [
        ('stratoq enqueue echo --payload \'{"a": "x # y"}\'', None),
        ("KEY=$(python3 -c 'print(1)')", None),
        ('curl -s -H "x-api-key: $KEY" http://127.0.0.1:8080/v1/tasks/<id>', None),
        ("stratoq status ID ; stratoq wait ID1 ID2   # several", None),
        ("eval \"$(stratoq --aws-endpoint-url $(python3 -c 'print(1)') provision)\"", None),
        ("pip install aws-sam-cli", "this test does not run `pip`"),
        ("stratoq dlq list ; docker compose up", "this test does not run `docker`"),
        ("X=$(make run)", "this test does not run `make`"),
        ("stratoq top --metrics-url http://10.0.0.5:9464/metrics", "it reaches 10.0.0.5"),
        ("curl https://example.com/x", "it reaches example.com"),
        ('curl -s "$API/v1/tasks"', "curl without a literal URL"),
    ],
)
def test_only_local_commands_of_known_programs_run(
    tmp_path: Path, command: str, refused: str | None
) -> None:
    path = tmp_path / "page.md"
    path.write_text(f"```sh\n{command}\n```\n")
    [cmd] = blocks(path)[0].commands()
    why = cmd.refusal()
    if refused is None:
        assert why is None
    else:
        assert why is not None and why.startswith(refused)
