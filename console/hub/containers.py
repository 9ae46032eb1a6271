"""Containers at the hub's edge: actions over the agents' streams, and their reports as plain statuses.

The launch service speaks plain words (`ContainerAction`, `CommandResult`);
this is where they become `pb.ContainerAction` commands and acks.
"""

from __future__ import annotations

from console.hub.sessions import SessionRegistry
from console.service.instances import ContainerReport
from console.service.launch import CommandResult, ContainerAction
from proto import gamenode_pb2 as pb

__all__ = ["RegistryContainers", "container_reports"]

_ACTIONS = {
    ContainerAction.STOP: pb.ContainerAction.ACTION_STOP,
    ContainerAction.RESTART: pb.ContainerAction.ACTION_RESTART,
    ContainerAction.REMOVE: pb.ContainerAction.ACTION_REMOVE,
}


class RegistryContainers:
    """Sends container actions to agents through the session registry (call on the hub's loop)."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry

    async def container_action(
        self, node_id: str, action: ContainerAction, instance_id: str, container_id: str
    ) -> CommandResult:
        command = pb.Command(container_action=pb.ContainerAction(
            action=_ACTIONS[action], instance_id=instance_id, container_id=container_id,
        ))
        ack = await self.registry.send_command(node_id, command)
        return CommandResult(ok=ack.ok, error=ack.error)


def container_reports(report: pb.InstanceReport) -> list[ContainerReport]:
    """An agent's instance report as the plain statuses `InstanceService.reconcile` takes."""
    return [
        ContainerReport(instance_id=s.instance_id, container_id=s.container_id, state=s.state,
                        exit_code=s.exit_code, error=s.error)
        for s in report.instances
    ]
