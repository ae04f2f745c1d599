"""The SDK's workflow methods (`Client.submit_workflow`, ...), mixed into `Client`.

from stratoq import Client, chain, chord
client = Client()
wf = client.submit_workflow(chord([("resize", {"n": i}) for i in range(100)], ("merge", None)))
done = client.wait_workflow(wf.id)
print(done.status, done.nodes[-1].result)
"""

from __future__ import annotations

import builtins
import time
from typing import Any

from stratoq.api.contract import Workflow, WorkflowPage, WorkflowRequest
from stratoq.core.errors import WaitTimeout
from stratoq.core.workflows import WorkflowStatus


class WorkflowMethods:
    """Workflow routes of the API; `Client` provides `_call`."""

    def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError

    def submit_workflow(self, workflow: WorkflowRequest | dict[str, Any]) -> Workflow:
        """Submit a workflow (build one with `chain`, `group`, `chord`, or give nodes with
        `depends_on`); raises InvalidRequest naming a repeated name, an unknown
        dependency or a cycle."""
        request = (
            workflow
            if isinstance(workflow, WorkflowRequest)
            else WorkflowRequest.model_validate(workflow)
        )
        body = request.model_dump(mode="json", exclude_unset=True)
        body["nodes"] = [n.model_dump(mode="json", exclude_unset=True) for n in request.nodes]
        return Workflow.model_validate(self._call("POST", "/v1/workflows", body))

    def get_workflow(self, workflow_id: str) -> Workflow:
        """A workflow with its nodes' statuses, results and times."""
        return Workflow.model_validate(self._call("GET", f"/v1/workflows/{workflow_id}"))

    def list_workflows(
        self, limit: int = 20, next_token: str | None = None
    ) -> tuple[builtins.list[Workflow], str | None]:
        """A page of workflows, newest first (without nodes), and the next page's token."""
        answer = self._call(
            "GET", "/v1/workflows", query={"limit": limit, "next_token": next_token}
        )
        page = WorkflowPage.model_validate(answer)
        return page.workflows, page.next_token

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel every node that has not started; Conflict once it has ended."""
        return Workflow.model_validate(self._call("POST", f"/v1/workflows/{workflow_id}/cancel"))

    def wait_workflow(self, workflow_id: str, timeout: float = 60.0, poll: float = 0.5) -> Workflow:
        """Poll until the workflow has ended; raises WaitTimeout after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            wf = self.get_workflow(workflow_id)
            if wf.status is not WorkflowStatus.RUNNING:
                return wf
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"workflow {workflow_id} is still running after {timeout} s")
            time.sleep(poll)
