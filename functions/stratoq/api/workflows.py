"""Routes of `/v1/workflows`: submit a DAG of tasks, read one, list, cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from stratoq.api.common import Caller, answer, check_name, check_payload, with_task_defaults
from stratoq.api.contract import Workflow, WorkflowPage, WorkflowRequest, responses
from stratoq.core.errors import InvalidRequestError
from stratoq.core.models import TaskRequest

if TYPE_CHECKING:
    from stratoq.services.app import Services


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the workflow routes to `app`, answering from `services`."""

    def prepare(request: TaskRequest, path: str) -> TaskRequest:
        # As `POST /v1/tasks` checks a task, naming the node's fields.
        check_payload(request, f"{path}.payload")
        check_name(request, services, f"{path}.task")
        return with_task_defaults(request, services, f"{path}.payload")

    @app.post(
        "/v1/workflows",
        responses=responses({202: ("submitted", Workflow)}, 400, 413, 503),
    )
    def submit_workflow(request: WorkflowRequest) -> Response[str]:
        """Submit a workflow: nodes with `depends_on` (a DAG; 400 naming a repeated name,
        an unknown dependency or a cycle). Nodes without dependencies start at once."""
        tenant = caller("tasks:write")
        return answer(202, services.workflows.submit(request, tenant, prepare))

    @app.get("/v1/workflows", responses=responses({200: ("a page", WorkflowPage)}, 400))
    def list_workflows(
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        next_token: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Response[str]:
        """A page of the caller's workflows, newest first (without their nodes)."""
        tenant = caller("tasks:read")
        try:
            found, token = services.workflows.list(tenant, limit, next_token)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), field="next_token") from None
        return answer(200, WorkflowPage(workflows=found, next_token=token))

    @app.get(
        "/v1/workflows/<workflow_id>", responses=responses({200: ("the workflow", Workflow)}, 404)
    )
    def get_workflow(workflow_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        """A workflow and each node's status, result, attempts and times."""
        tenant = caller("tasks:read")
        return answer(200, services.workflows.get(workflow_id, tenant))

    @app.post(
        "/v1/workflows/<workflow_id>/cancel",
        responses=responses({200: ("cancelled", Workflow)}, 404, 409),
    )
    def cancel_workflow(workflow_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        """Cancel every node that has not started (running ones finish); 409 once the
        workflow has ended."""
        tenant = caller("tasks:write")
        return answer(200, services.workflows.cancel(workflow_id, tenant))
