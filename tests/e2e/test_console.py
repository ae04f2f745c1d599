"""The task console (`/console`) in a real browser: Playwright driving Debian's Chromium
against one `stratoq dev` per module.

One browser for the module; each test opens a fresh context (its own session storage),
signs in with a key and acts only through the page, as a user would. Tasks are made
through the SDK, as a producer would make them. A test waits on what the page shows
(Playwright's `expect` polls); the page's own live refresh brings the changes.

STRATOQ_CONSOLE_SCREENSHOTS=docs/images saves the screenshots of docs/console.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stratoq import Client
from stratoq.core.models import TaskStatus
from tests.e2e.conftest import DevStack, key_for, start_dev, stop_dev
from tests.support.procs import wait_for

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

CHROMIUM = Path(os.environ.get("STRATOQ_CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM} (.ci/run installs Debian's `chromium` package)",
)
SHOTS = os.environ.get("STRATOQ_CONSOLE_SCREENSHOTS")
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = start_dev(tmp_path_factory.mktemp("console"))
    try:
        yield dev
    finally:
        assert stop_dev(dev) == 0, dev.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def acme(stack: DevStack) -> str:
    """An admin key of tenant acme (not the operator's)."""
    return key_for(stack, "acme", "admin")


class Console:
    """One browser tab on the console, recording what must never happen."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.dialogs: list[str] = []  # alert(), confirm(): the console uses neither
        self.violations: list[str] = []  # CSP reports, script errors
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.violations.append(str(e)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # A refused request (a 404 the page shows as a notice) is logged too: not a fault.
        if message.type in ("error", "warning") and "Failed to load resource" not in message.text:
            self.violations.append(message.text)

    def sign_in(self, key: str) -> None:
        self.page.goto(self.url + "/console")
        self.page.fill("#api-key", key)
        self.page.click("#sign-in button")
        expect(self.page.locator("#notice")).to_have_text("Signed in.")

    def search(self, **filters: str) -> None:
        for field, value in filters.items():
            if field == "status":
                self.page.select_option("#filter-status", value)
            else:
                self.page.fill(f"#filter-{field}", value)
        self.page.click("#task-filters button[type=submit]")

    def requests(self, part: str) -> list[str]:
        """URLs the page asks the API for from now on, those containing `part`."""
        seen: list[str] = []
        self.page.on("request", lambda r: seen.append(r.url) if part in r.url else None)
        return seen

    def row(self, task_id: str) -> Any:
        return self.page.locator("#tasks tr.task-row", has_text=task_id)

    def confirm(self) -> None:
        expect(self.page.locator("#confirm")).to_be_visible()
        self.page.click("#confirm-yes")

    def status(self) -> Any:
        return self.page.locator("#task h2 .status")

    def shot(self, name: str) -> None:
        if SHOTS:
            self.page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


@pytest.fixture
def console(browser: Browser, stack: DevStack) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        tab = Console(context.new_page(), stack.api_url)
        yield tab
        assert tab.dialogs == []
        assert tab.violations == []
    finally:
        context.close()


def test_the_page_is_public_and_its_policy_forbids_inline_scripts(stack: DevStack) -> None:
    page = stack.http.request("GET", stack.api_url + "/console")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert b"<script>" not in page.data  # every script is a file
    assert stack.http.request("GET", stack.api_url + "/console/app.js").status == 200
    # With a trailing slash the page's relative links would miss: sent to /console.
    slash = stack.http.request("GET", stack.api_url + "/console/", redirect=False)
    assert (slash.status, slash.headers["Location"]) == (308, "../console")
    missing = stack.http.request("GET", stack.api_url + "/console/secrets.txt")
    assert missing.status == 404
    assert "secrets.txt" in missing.json()["message"]
    # The API behind it still wants a key.
    assert stack.request("GET", "/v1/tasks", key=None)[0] == 401
    # `stratoq dev` (make run) says where it is.
    shown = f"console:     {stack.api_url}/console"
    wait_for(lambda: shown in stack.log.read_text(), 30, "the console's URL in the output")


def test_find_a_failed_task_open_it_and_retry_it_to_success(
    console: Console, stack: DevStack, acme: str, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    flag.write_text("")
    client = Client(stack.api_url, acme)
    task = client.enqueue("fail_while", {"path": str(flag)}, max_attempts=1)
    assert client.wait(task.id, timeout=60).status is TaskStatus.FAILED

    console.sign_in(acme)
    console.search(status="failed", name="fail_while")
    row = console.row(task.id)
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("failed")  # the state as a word
    console.shot("tasks")
    row.locator("a.open").click()

    page = console.page
    expect(console.status()).to_have_text("failed")
    attempts = page.locator("#attempts tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("fail")
    expect(attempts.first).to_contain_text(f"{flag} exists")
    console.shot("task")

    flag.unlink()
    page.click("#retry")
    expect(page.locator("#confirm-text")).to_contain_text(task.id)
    console.confirm()
    # No reload: the page's live refresh shows the task run and succeed.
    expect(console.status()).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#result")).to_have_text('"ok"')
    assert client.get(task.id).status is TaskStatus.SUCCEEDED


def local(when: datetime) -> str:
    """A time as a datetime-local input takes it (the console reads it as UTC)."""
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}"


def test_filter_by_queue_and_time_range(console: Console, stack: DevStack, acme: str) -> None:
    client = Client(stack.api_url, acme)
    first, middle, last = (client.enqueue("echo", {"n": i}, delay_seconds=900) for i in range(3))
    console.sign_in(acme)
    asked = console.requests("/v1/tasks?")
    console.search(queue="default", after=local(first.created_at), before=local(last.created_at))
    expect(console.row(middle.id)).to_be_visible()
    expect(console.page.locator("#tasks tr.task-row")).to_have_count(1)  # both ends exclusive
    console.shot("filters")
    console.search(queue="reports")
    expect(console.page.locator("#tasks tr.task-row")).to_have_count(0)
    expect(console.page.get_by_text("No task on this page.")).to_be_visible()
    # The API filtered (over every task, not within a page the browser holds).
    assert any("queue=reports" in u and "created_after=" in u for u in asked), asked


def test_retry_the_failed_tasks_of_a_filter(
    console: Console, stack: DevStack, acme: str, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    flag.write_text("")
    client = Client(stack.api_url, acme)
    # Failed tasks of earlier tests were made before the marker: outside the range.
    marker = client.enqueue("echo", {"marker": True})
    failed = [
        client.enqueue("fail_while", {"path": str(flag), "n": i}, max_attempts=1) for i in range(2)
    ]
    for task in failed:
        assert client.wait(task.id, timeout=60).status is TaskStatus.FAILED
    console.sign_in(acme)
    console.search(name="fail_while", after=local(marker.created_at))
    console.page.click("#retry-failed")
    text = console.page.locator("#confirm-text")
    expect(text).to_contain_text("Run again 2 failed task(s) named fail_while, created after")
    flag.unlink()
    console.confirm()
    expect(console.page.locator("#notice")).to_have_text("2 failed task(s) queued again.")
    for task in failed:
        assert client.wait(task.id, timeout=60).status is TaskStatus.SUCCEEDED


def test_a_running_task_shows_its_lease_holder(
    console: Console, stack: DevStack, acme: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    client = Client(stack.api_url, acme)
    task = client.enqueue("progress", {"gate": str(gate)})
    wait_for(lambda: client.get(task.id).status is TaskStatus.RUNNING, 60, "the task to start")
    console.sign_in(acme)
    console.search(id=task.id)
    page = console.page
    expect(console.status()).to_have_text("running")
    expect(page.locator("#task dt", has_text="Lease holder")).to_be_visible()
    # A poller's slot: host/pid/slot-<n>.
    expect(page.locator("#holder")).to_have_text(re.compile(r"^[^/]+/\d+/slot-\d+$"))
    holder = page.locator("#holder").inner_text()
    console.shot("running")
    gate.write_text("")
    expect(console.status()).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#task dt", has_text="Last lease holder")).to_be_visible()
    expect(page.locator("#holder")).to_have_text(holder)


def test_cancel_a_task_that_has_not_started(console: Console, stack: DevStack, acme: str) -> None:
    client = Client(stack.api_url, acme)
    task = client.enqueue("echo", {"later": True}, delay_seconds=900)
    console.sign_in(acme)
    console.search(id=task.id)  # a task id opens that task
    expect(console.status()).to_have_text(task.status.value)
    console.page.click("#cancel")
    console.page.click("#confirm-no")  # asked first: "No" leaves it be
    expect(console.page.locator("#confirm")).to_be_hidden()
    assert client.get(task.id).status is task.status
    console.page.click("#cancel")
    console.confirm()
    expect(console.status()).to_have_text("cancelled")
    expect(console.page.locator("#cancel")).to_be_hidden()
    assert client.get(task.id).status is TaskStatus.CANCELLED


def test_another_tenants_key_sees_none_of_its_tasks(
    console: Console, stack: DevStack, acme: str
) -> None:
    task = Client(stack.api_url, acme).enqueue("echo", {"private": True})
    other = key_for(stack, "globex", "admin")
    console.sign_in(other)
    expect(console.page.locator("#tasks tr.task-row")).to_have_count(0)
    expect(console.page.get_by_text("No task on this page.")).to_be_visible()
    console.search(id=task.id)
    expect(console.page.locator("#notice")).to_have_text(f"no task {task.id}")
    expect(console.page.locator("#task")).to_have_count(0)


def test_markup_in_a_payload_is_shown_as_text(console: Console, stack: DevStack, acme: str) -> None:
    payload = {
        "script": "<script>window.pwned = 1</script>",
        "attr": '"><img src=x onerror="window.pwned=2;alert(1)">',
    }
    client = Client(stack.api_url, acme)
    task = client.enqueue("echo", payload)
    assert client.wait(task.id, timeout=60).status is TaskStatus.SUCCEEDED
    console.sign_in(acme)
    console.search(id=task.id)
    shown = console.page.locator("#payload")
    expect(shown).to_contain_text("<script>window.pwned = 1</script>")
    expect(shown).to_contain_text('<img src=x onerror=\\"window.pwned=2;alert(1)\\">')
    expect(console.page.locator("#result")).to_contain_text("<script>")
    assert console.page.locator("#task img, #task script").count() == 0
    assert console.page.evaluate("window.pwned") is None
    # The fixture asserts that no dialog opened and the policy reported nothing.


def test_keyboard_alone_opens_a_task(console: Console, stack: DevStack, acme: str) -> None:
    task = Client(stack.api_url, acme).enqueue("echo", {"keyboard": True})
    console.sign_in(acme)
    page = console.page
    expect(console.row(task.id)).to_be_visible()
    page.focus("#filter-id")
    for _ in range(40):  # Tab through the filters to the first task's link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('open')"):
            break
    else:
        pytest.fail("Tab never reached a task's link")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/tasks/[0-9a-f]+$"))
    expect(console.status()).to_be_visible()


def test_the_task_list_fits_a_phone(browser: Browser, stack: DevStack, acme: str) -> None:
    task = Client(stack.api_url, acme).enqueue("echo", {"phone": True})
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        console = Console(context.new_page(), stack.api_url)
        console.sign_in(acme)
        row = console.row(task.id)
        expect(row).to_be_visible()
        # No sideways scrolling; each row is a card whose labelled lines fit the width.
        page = console.page
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = row.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        console.shot("phone")
        row.locator("a.open").tap()
        expect(console.status()).to_be_visible()
        assert console.violations == []
    finally:
        context.close()


def test_queues_schedules_and_keys_pages(console: Console, stack: DevStack, acme: str) -> None:
    client = Client(stack.api_url, acme)
    client.put_schedule(
        "nightly-report", "cron(0 3 * * ? *)", {"name": "echo", "payload": {"r": 1}}
    )
    console.sign_in(acme)
    page = console.page

    expect(page.locator("#whoami")).to_have_text("tenant acme")
    page.click("nav >> text=Queues")
    default = page.locator("#queues tbody tr", has_text="default").first
    expect(default).to_contain_text("running")  # the state as a word
    # Pausing and redriving are the operator's: an admin key of a tenant is not offered them.
    expect(page.locator("#queues tbody tr")).to_have_count(3)  # default at 3 priorities
    expect(page.locator("#queues button")).to_have_count(0)

    page.click("nav >> text=Schedules")
    row = page.locator("#schedules tbody tr", has_text="nightly-report")
    expect(row).to_contain_text("enabled")
    expect(row).to_contain_text("03:00:00 UTC")  # the next fire time
    row.get_by_role("button", name="Disable").click()
    console.confirm()
    expect(row).to_contain_text("disabled")
    assert client.get_schedule("nightly-report")["enabled"] is False
    row.get_by_role("button", name="Trigger now").click()
    console.confirm()
    expect(page.locator("#notice")).to_have_text(re.compile(r"^Enqueued task [0-9a-f]+\.$"))
    console.shot("schedules")

    page.click("nav >> text=API keys")
    page.fill("#key-tenant", "acme")
    page.fill("#key-scopes", "tasks:read")
    page.fill("#key-name", "dashboard")
    page.click("#new-key button")
    secret = page.locator("#secret pre")
    expect(secret).to_have_text(re.compile(r"^sq_"))
    made = secret.inner_text()
    assert Client(stack.api_url, made).list(limit=1) is not None  # the key works
    page.click("#secret button")
    expect(page.locator("#secret")).to_be_hidden()  # shown once
    key_id = made.split("_")[1]
    key_row = page.locator("#keys tbody tr", has_text=key_id)
    expect(key_row).to_contain_text("active")
    console.shot("keys")
    key_row.get_by_role("button", name="Revoke").click()
    console.confirm()
    expect(key_row).to_contain_text("revoked")


def test_only_the_operator_is_offered_pause_and_redrive(console: Console, stack: DevStack) -> None:
    console.sign_in(stack.api_key)  # the bootstrap key: an admin key of the operator tenant
    page = console.page
    expect(page.locator("#whoami")).to_have_text(re.compile(r"\(operator\)$"))
    page.click("nav >> text=Queues")
    queues = page.locator("#queues")
    expect(queues.get_by_role("button", name="Pause")).to_be_visible()
    expect(queues.get_by_role("button", name="Redrive dead letters")).to_be_visible()
    console.shot("queues")


def test_a_read_only_key_is_offered_no_action(console: Console, stack: DevStack, acme: str) -> None:
    task = Client(stack.api_url, acme).enqueue("echo", {"later": True}, delay_seconds=900)
    console.sign_in(key_for(stack, "acme", "tasks:read"))
    page = console.page
    expect(page.locator("#whoami")).to_have_text("tenant acme")
    expect(page.locator("#retry-failed")).to_be_hidden()
    expect(page.locator("nav >> text=API keys")).to_be_hidden()
    console.search(id=task.id)
    expect(console.status()).to_have_text(task.status.value)
    expect(page.locator("#cancel")).to_be_hidden()


def test_a_spawned_workflows_task_links_to_its_workflow_and_its_parent(
    console: Console, stack: DevStack, acme: str
) -> None:
    from stratoq.core.workflows import child_id, node_task_id

    client = Client(stack.api_url, acme)
    parent = client.enqueue("spawner", {"tasks": 1, "chain": True})
    assert client.wait(parent.id, timeout=60).status is TaskStatus.SUCCEEDED
    echo, wf_id = child_id(parent.id, 0), child_id(parent.id, 1)  # in the order spawned
    assert client.wait_workflow(wf_id, timeout=60).status == "succeeded"

    console.sign_in(acme)
    page = console.page
    page.goto(f"{stack.api_url}/console#/tasks/{node_task_id(wf_id, 1)}")
    expect(console.status()).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#workflow-link")).to_contain_text("node step-1")
    page.locator("#workflow-link a").click()
    nodes = page.locator("#nodes tbody tr")
    expect(nodes).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("#workflow h2 .status")).to_have_text("succeeded")
    expect(nodes.nth(1)).to_contain_text("step-0")  # what it depends on
    console.shot("workflow")
    nodes.first.locator("a.open").click()
    expect(page.locator("#task h2")).to_contain_text("add_to_parent", timeout=WAIT_MS)

    page.goto(f"{stack.api_url}/console#/tasks/{echo}")
    expect(page.locator("#parent-link a")).to_have_text(parent.id, timeout=WAIT_MS)
    page.locator("#parent-link a").click()
    expect(page.locator("#task h2")).to_contain_text("spawner", timeout=WAIT_MS)
