"""Game instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from console.hub.api.deps import Svc, page_answer
from console.hub.schemas import InstanceStateBody, InstanceUpdate
from console.models import Instance
from console.service import InstanceQuery, InstanceSpec

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])


@router.get("", summary="List instances")
def list_instances(svc: Svc, response: Response, query: Annotated[InstanceQuery, Query()]) -> list[Instance]:
    return page_answer(svc.instances.list_instances(query), response)


@router.post("", status_code=201, summary="Create an instance (reserves its resources)")
def create_instance(svc: Svc, body: InstanceSpec) -> Instance:
    """409 when the node is in maintenance, lacks a platform's labels or has not enough room."""
    return svc.instances.create_instance(body)


@router.get("/{instance_id}", summary="Get an instance")
def get_instance(svc: Svc, instance_id: str) -> Instance:
    return svc.instances.get_instance(instance_id)


@router.put("/{instance_id}", summary="Update an instance's container, ports, run or params")
def update_instance(svc: Svc, instance_id: str, body: InstanceUpdate) -> Instance:
    return svc.instances.update_instance(instance_id, body.model_dump(exclude_unset=True))


@router.put("/{instance_id}/state", summary="Move an instance to another state")
def set_instance_state(svc: Svc, instance_id: str, body: InstanceStateBody) -> Instance:
    return svc.instances.transition(instance_id, body.state, body.error, body.container_id)


@router.delete("/{instance_id}", status_code=204, summary="Delete a stopped or failed instance")
def delete_instance(svc: Svc, instance_id: str) -> None:
    svc.instances.delete_instance(instance_id)
