"""Platforms and their config maps.

Every platform answered goes through `PlatformService.redacted`: its secret
params read `***` (a write that gives `***` keeps the stored value).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from console.hub.api.deps import Svc, page_answer
from console.hub.auth import ADMIN
from console.hub.schemas import ConfigValue, PlatformStateBody
from console.models import Platform
from console.service import PlatformQuery

router = APIRouter(prefix="/api/v1/platforms", tags=["platforms"])

JsonObject = Annotated[dict[str, Any], Body()]


@router.get("", summary="List platforms")
def list_platforms(svc: Svc, response: Response, query: Annotated[PlatformQuery, Query()]) -> list[Platform]:
    return [svc.platforms.redacted(p) for p in page_answer(svc.platforms.list_platforms(query), response)]


@router.post("", dependencies=[ADMIN], status_code=201, summary="Create a platform")
def create_platform(svc: Svc, body: JsonObject) -> Platform:
    return svc.platforms.redacted(svc.platforms.create_platform(body))


@router.get("/{platform_id}", summary="Get a platform")
def get_platform(svc: Svc, platform_id: str) -> Platform:
    return svc.platforms.redacted(svc.platforms.get_platform(platform_id))


@router.put("/{platform_id}", dependencies=[ADMIN], summary="Update a platform")
def update_platform(svc: Svc, platform_id: str, body: JsonObject) -> Platform:
    return svc.platforms.redacted(svc.platforms.update_platform(platform_id, body))


@router.delete("/{platform_id}", dependencies=[ADMIN], status_code=204, summary="Delete a platform")
def delete_platform(svc: Svc, platform_id: str) -> None:
    svc.platforms.delete_platform(platform_id)


@router.put("/{platform_id}/state", dependencies=[ADMIN], summary="Enable or disable a platform")
def set_platform_state(svc: Svc, platform_id: str, body: PlatformStateBody) -> Platform:
    return svc.platforms.redacted(svc.platforms.set_state(platform_id, body.state))


@router.get("/{platform_id}/config", summary="The whole config map")
def get_config(svc: Svc, platform_id: str) -> dict[str, Any]:
    config: dict[str, Any] = svc.platforms.get_config(platform_id)
    return config


@router.put("/{platform_id}/config", dependencies=[ADMIN], summary="Replace the config map")
def replace_config(svc: Svc, platform_id: str, body: JsonObject) -> dict[str, Any]:
    return dict(svc.platforms.set_config(platform_id, body, replace=True).config)


@router.patch("/{platform_id}/config", dependencies=[ADMIN], summary="Merge keys into the config map")
def merge_config(svc: Svc, platform_id: str, body: JsonObject) -> dict[str, Any]:
    return dict(svc.platforms.set_config(platform_id, body).config)


@router.get("/{platform_id}/config/{key}", summary="One config value")
def get_config_key(svc: Svc, platform_id: str, key: str) -> ConfigValue:
    return ConfigValue(value=svc.platforms.get_config(platform_id, key))


@router.put("/{platform_id}/config/{key}", dependencies=[ADMIN], summary="Set one config value")
def set_config_key(svc: Svc, platform_id: str, key: str, body: ConfigValue) -> ConfigValue:
    svc.platforms.set_config(platform_id, {key: body.value})
    return body


@router.delete("/{platform_id}/config/{key}", dependencies=[ADMIN], status_code=204, summary="Remove one config key")
def delete_config_key(svc: Svc, platform_id: str, key: str) -> None:
    svc.platforms.delete_config(platform_id, key)
