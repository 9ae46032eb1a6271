"""The seed's six node endpoints, plus history, labels and resources.

Nodes are answered with their live `metrics` and `resources` (the latest
sample from their agent), which are never written to the node's record.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from console.hub.api.deps import Actor, Live, Svc, page_answer
from console.hub.auth import ADMIN, OPERATOR
from console.hub.schemas import LabelsPatch, NodeBody, NodeResources, NodeStatusBody, NodeUpdate
from console.models import GameNode, Instance, StatusChange
from console.service import InstanceQuery, NodeQuery, node_capacity

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"])


@router.get("", summary="List nodes")
def list_nodes(
    svc: Svc, live: Live, response: Response, query: Annotated[NodeQuery, Query()]
) -> list[GameNode]:
    """Filter by status, type, location, label `selector` (`region=eu,rack!=r3`) and free text `q`;
    `sort` by fields (`-status,name`), page with `limit`/`offset`. Total in `X-Total-Count`."""
    return [live.overlay(n) for n in page_answer(svc.nodes.list_nodes(query), response)]


@router.post("", dependencies=[ADMIN], status_code=201, summary="Create a node")
def create_node(svc: Svc, live: Live, body: NodeBody, actor: Actor) -> GameNode:
    return live.overlay(svc.nodes.create_node(body.model_dump(exclude_unset=True), actor))


@router.get("/{node_id}", summary="Get a node")
def get_node(svc: Svc, live: Live, node_id: str) -> GameNode:
    return live.overlay(svc.nodes.get_node(node_id))


@router.put("/{node_id}", dependencies=[ADMIN], summary="Update a node")
def update_node(svc: Svc, live: Live, node_id: str, body: NodeUpdate, actor: Actor) -> GameNode:
    return live.overlay(svc.nodes.update_node(node_id, body.model_dump(exclude_unset=True), actor))


@router.delete("/{node_id}", dependencies=[ADMIN], status_code=204, summary="Delete a node")
def delete_node(svc: Svc, node_id: str) -> None:
    """Refused (409) while the node has live instances."""
    svc.nodes.delete_node(node_id)


@router.put("/{node_id}/status", dependencies=[OPERATOR], summary="Update a node's status")
def update_node_status(svc: Svc, live: Live, node_id: str, body: NodeStatusBody, actor: Actor) -> GameNode:
    """Follows the status state machine (409 for an illegal change); maintenance needs a reason."""
    return live.overlay(svc.nodes.update_node_status(node_id, body.status, body.reason, actor))


@router.get("/{node_id}/history", summary="A node's status history")
def node_history(svc: Svc, node_id: str) -> list[StatusChange]:
    return svc.nodes.status_history(node_id)


@router.patch("/{node_id}/labels", dependencies=[ADMIN], summary="Add, change or remove labels")
def patch_labels(svc: Svc, live: Live, node_id: str, body: LabelsPatch) -> GameNode:
    return live.overlay(svc.nodes.update_labels(node_id, body.set, body.remove))


@router.get("/{node_id}/resources", summary="Capacity, reserved and free resources")
def node_resources(svc: Svc, node_id: str) -> NodeResources:
    node = svc.nodes.get_node(node_id)
    return NodeResources(
        capacity=node_capacity(node), reserved=svc.instances.reserved(node_id), free=svc.instances.free(node_id)
    )


@router.get("/{node_id}/instances", summary="Instances on a node")
def node_instances(svc: Svc, node_id: str, response: Response) -> list[Instance]:
    svc.nodes.get_node(node_id)
    return page_answer(svc.instances.list_instances(InstanceQuery(node_id=node_id)), response)
