"""`file.render`: a template with the run's names (`${params.x}`, `${vars.y}`, ...) → a file in the data dir.

An inline `template` arrives rendered already (the engine renders a step's
inputs, `vars` included, before the action runs: `agent.pipeline.spec.step_inputs`),
so it is written as it is: rendering it again would read a `${` that came
from a value or a `$${` escape as a reference. A `template_file` is read and
rendered here, with the run's scope plus `vars`.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from agent.errors import PipelineError, StepFailed
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import FileRender
from agent.pipeline.template import render as render_template

__all__ = ["render"]


async def render(ctx: StepContext, inputs: FileRender) -> dict[str, Any]:
    """Write the (rendered) `template`, or render `template_file` with the run's scope plus `vars`, into `dest`."""
    if bool(inputs.template) == bool(inputs.template_file):
        raise StepFailed("file.render needs exactly one of `template` and `template_file`")
    target = ctx.inside(inputs.dest, "dest")
    content = inputs.template
    if inputs.template_file:
        text = await asyncio.to_thread(_read, ctx.path(inputs.template_file, "template_file"))
        content = _render(text, {**ctx.scope, "vars": inputs.vars}, inputs.template_file)
    await asyncio.to_thread(_write, target, content.encode(), inputs.mode)
    ctx.progress(100.0, f"wrote {inputs.dest}")
    ctx.log(f"rendered {target} ({len(content)} characters)")
    return {"path": str(target)}


def _render(text: str, scope: dict[str, Any], source: str) -> str:
    try:
        rendered = render_template(text, scope, source)
    except PipelineError as exc:
        raise StepFailed(f"rendering {source} failed: {exc.message}") from exc
    return rendered if isinstance(rendered, str) else json.dumps(rendered, default=str)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StepFailed(f"cannot read the template {path}: {exc.strerror or exc}") from exc


def _write(target: Path, data: bytes, mode: int) -> None:
    """Replace `target` with `data` (temp file in the same dir, then rename): readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    try:
        with open(temp, "wb") as out:
            out.write(data)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StepFailed(f"cannot write {target}: {exc.strerror or exc}") from exc
