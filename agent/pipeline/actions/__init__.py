"""The pipeline actions: `ACTION_RUNNERS[name](ctx, inputs)` runs one step, answering its outputs.

One module per family: `image` (image.pull), `data` (data.fetch), `files`
(file.render), `network` (network.ensure), `container` (container.run, .stop,
.restart, .remove), `wait` (container.wait), `shell`. Each runner takes the
`StepContext` and the validated inputs model of `agent.pipeline.inputs.ACTIONS`
and returns JSON-able outputs; a failure is `StepFailed` (what failed and
why); cancellation propagates as `CancelledError` after the action cleaned up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agent.pipeline.actions import container, data, files, image, network, shell, wait
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import (
    ContainerRemove,
    ContainerRestart,
    ContainerRun,
    ContainerStop,
    ContainerWait,
    DataFetch,
    FileRender,
    ImagePull,
    Inputs,
    NetworkEnsure,
    Shell,
)

__all__ = ["ACTION_RUNNERS", "Runner"]

Runner = Callable[[StepContext, Inputs], Awaitable[dict[str, Any]]]
I = TypeVar("I", bound=Inputs)  # noqa: E741


def _runner(model: type[I], action: Callable[[StepContext, I], Awaitable[dict[str, Any]]]) -> Runner:
    """`action` as a `Runner`: checks that it is given its own inputs model."""

    async def run(ctx: StepContext, inputs: Inputs) -> dict[str, Any]:
        if not isinstance(inputs, model):
            raise TypeError(f"{action.__qualname__} takes {model.__name__}, not {type(inputs).__name__}")
        return await action(ctx, inputs)

    run.__doc__ = action.__doc__
    return run


ACTION_RUNNERS: dict[str, Runner] = {
    "image.pull": _runner(ImagePull, image.pull),
    "data.fetch": _runner(DataFetch, data.fetch),
    "file.render": _runner(FileRender, files.render),
    "network.ensure": _runner(NetworkEnsure, network.ensure),
    "container.run": _runner(ContainerRun, container.run),
    "container.wait": _runner(ContainerWait, wait.wait),
    "container.stop": _runner(ContainerStop, container.stop),
    "container.remove": _runner(ContainerRemove, container.remove),
    "container.restart": _runner(ContainerRestart, container.restart),
    "shell": _runner(Shell, shell.run),
}
"""Every action of `agent.pipeline.inputs.ACTIONS`, by name."""
