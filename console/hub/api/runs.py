"""Pipeline runs: start one on a node, list, read (live step progress), cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from console.hub.api.deps import Actor, Svc, page_answer
from console.hub.auth import OPERATOR
from console.models import PipelineRun, Resources
from console.service import RunQuery, RunRequest

__all__ = ["CancelBody", "StartRunBody", "router"]

router = APIRouter(prefix="/api/v1", tags=["runs"])


class StartRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | None = None
    """A pipeline of the hub's catalog (`GET /api/v1/pipelines`) by name; or give `yaml`."""
    yaml: str | None = None
    """An inline pipeline."""
    params: dict[str, Any] = Field(default_factory=dict)
    instance_id: str | None = None
    """stop/use pipelines: the instance they act on; create: the new instance's id (optional)."""
    resources: Resources | None = None
    """create: what the new instance reserves on the node."""
    reason: str = ""


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = ""


@router.post(
    "/nodes/{node_id}/pipelines", dependencies=[OPERATOR], status_code=201, summary="Start a pipeline run on a node")
def start_run(svc: Svc, actor: Actor, node_id: str, body: StartRunBody) -> PipelineRun:
    """422 with each mistake's field path and YAML line for an invalid pipeline or params; 404 for an
    unknown node or instance; 409 when the node is offline or in maintenance (with its reason), or a
    `create` pipeline's instance does not fit. A `create` pipeline's instance is created (pending, its
    resources reserved) with the run."""
    return svc.runs.start_request(RunRequest(node_id=node_id, **body.model_dump()), actor)


@router.get("/runs", summary="List pipeline runs, newest first")
def list_runs(svc: Svc, response: Response, query: Annotated[RunQuery, Query()]) -> list[PipelineRun]:
    return page_answer(svc.runs.list_runs(query), response)


@router.get("/runs/{run_id}", summary="Get a run with its steps' live state and progress")
def get_run(svc: Svc, run_id: str) -> PipelineRun:
    return svc.runs.get_run(run_id)


@router.post(
    "/runs/{run_id}/cancel", dependencies=[OPERATOR], summary="Cancel a run (its cleanup steps run on the node)")
def cancel_run(svc: Svc, actor: Actor, run_id: str, body: CancelBody | None = None) -> PipelineRun:
    """The run is `cancelling` until the agent reports it cancelled (or finished first). 409 for a
    run that has finished."""
    return svc.runs.cancel(run_id, body.reason if body else "", actor)
