"""The hub's named pipelines (`config/pipeline/*.yaml`, or the `pipeline_dir` setting)."""

from __future__ import annotations

from fastapi import APIRouter

from console.hub.api.deps import Svc
from console.service import PipelineInfo

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"])


@router.get("", summary="List the named pipelines")
def list_pipelines(svc: Svc) -> list[PipelineInfo]:
    """Each with its params (type, default, required, secret) and step names; a file that does not
    validate is listed with its `problems`."""
    return [PipelineInfo.of(entry) for entry in svc.runs.catalog.list()]


@router.get("/{name}", summary="Get a named pipeline, with its YAML")
def get_pipeline(svc: Svc, name: str) -> PipelineInfo:
    entry = svc.runs.catalog.get(name)
    return PipelineInfo.of(entry).model_copy(update={"yaml": entry.text})
