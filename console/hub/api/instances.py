"""Game instances: launch (placement + the platform's start pipeline), stop, container actions.

`POST /api/v1/instances` launches a game (see `console.service.launch`);
`POST /api/v1/instances/register` only records an instance on a given node,
reserving its resources, with nothing run on the node (imports and tests).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from console.hub.api.deps import Actor, Svc, page_answer
from console.hub.auth import OPERATOR
from console.hub.containers import RegistryContainers
from console.hub.schemas import InstanceStateBody, InstanceUpdate
from console.hub.sessions import SessionRegistry
from console.models import Instance
from console.service import InstanceQuery, InstanceSpec, Services
from console.service.launch import ContainerAction, Launched, LaunchRequest, LaunchService, Stopped

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: ContainerAction


def _launcher(request: Request) -> LaunchService:
    """The app's launch service (`app.state.launch`), built on first use over its services and agents."""
    state = request.app.state
    launcher: LaunchService | None = getattr(state, "launch", None)
    if launcher is None:
        services: Services = state.services
        registry: SessionRegistry | None = state.registry
        launcher = state.launch = LaunchService.over(
            services, services.runs, is_online=registry.connected if registry is not None else None,
            agent=RegistryContainers(registry) if registry is not None else None,
        )
    return launcher


Launcher = Annotated[LaunchService, Depends(_launcher)]


@router.get("", summary="List instances")
def list_instances(svc: Svc, response: Response, query: Annotated[InstanceQuery, Query()]) -> list[Instance]:
    return page_answer(svc.instances.list_instances(query), response)


@router.post(
    "", dependencies=[OPERATOR], status_code=201, summary="Launch a game: place it, reserve its resources, start it")
def launch_instance(launcher: Launcher, actor: Actor, body: LaunchRequest) -> Launched:
    """The instance (pending) and the id of the run that starts it. 409 when no node fits, with the
    reason each node was rejected (in the message and in `details`, path = node id)."""
    return launcher.launch(body, created_by=actor)


@router.post(
    "/register", dependencies=[OPERATOR], status_code=201,
    summary="Record an instance on a node without running anything")
def register_instance(svc: Svc, body: InstanceSpec) -> Instance:
    """Reserves its resources. 409 when the node is in maintenance, lacks a platform's labels or has
    not enough room."""
    return svc.instances.create_instance(body)


@router.get("/{instance_id}", summary="Get an instance")
def get_instance(svc: Svc, instance_id: str) -> Instance:
    return svc.instances.get_instance(instance_id)


@router.put("/{instance_id}", dependencies=[OPERATOR], summary="Update an instance's container, ports, run or params")
def update_instance(svc: Svc, instance_id: str, body: InstanceUpdate) -> Instance:
    return svc.instances.update_instance(instance_id, body.model_dump(exclude_unset=True))


@router.put("/{instance_id}/state", dependencies=[OPERATOR], summary="Move an instance to another state")
def set_instance_state(svc: Svc, instance_id: str, body: InstanceStateBody) -> Instance:
    return svc.instances.transition(instance_id, body.state, body.error, body.container_id)


@router.post(
    "/{instance_id}/actions", dependencies=[OPERATOR], summary="Stop, restart or remove the instance's container")
async def instance_action(launcher: Launcher, instance_id: str, body: ActionBody) -> Instance:
    """Through the node's agent: 409 when it is offline or refuses (with its reason), 504 when it
    does not answer in time. Stop and remove leave the instance stopped and its resources released."""
    return await launcher.action(instance_id, ContainerAction(body.action))


@router.delete(
    "/{instance_id}", dependencies=[OPERATOR], status_code=202, response_model=Stopped,
    responses={200: {"description": "Stopped with force: released without the node"},
               204: {"description": "The instance was stopped or failed already: its record is deleted"}},
    summary="Stop an instance (its platform's stop pipeline) and release its resources",
)
def stop_instance(
    launcher: Launcher, actor: Actor, instance_id: str, response: Response,
    force: Annotated[bool, Query(description="When its node is offline: mark it stopped without the node")] = False,
) -> Stopped | Response:
    """202 with the stop run; 409 when the node is offline (unless `force`)."""
    stopped = launcher.stop(instance_id, force=force, created_by=actor)
    if stopped.deleted:
        return Response(status_code=204)
    if stopped.run_id is None:
        response.status_code = 200
    return stopped
