"""Game cards and their versions.

Every card and version answered goes through `GameCardService.redacted`: the
secret params of its versions read `***` (a write that gives `***` keeps the
stored value).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from console.errors import NotFound
from console.hub.api.deps import Svc, page_answer
from console.hub.auth import ADMIN
from console.hub.schemas import DefaultVersionBody, VersionStatusBody
from console.models import GameCard, GameVersion
from console.service import GameCardQuery
from console.service.gamecards import default_version, sorted_versions

router = APIRouter(prefix="/api/v1/gamecards", tags=["game cards"])

JsonObject = Annotated[dict[str, Any], Body()]


@router.get("", summary="List game cards")
def list_cards(svc: Svc, response: Response, query: Annotated[GameCardQuery, Query()]) -> list[GameCard]:
    return [svc.gamecards.redacted(c) for c in page_answer(svc.gamecards.list_cards(query), response)]


@router.post("", dependencies=[ADMIN], status_code=201, summary="Create a game card")
def create_card(svc: Svc, body: JsonObject) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.create_card(body))


@router.get("/{card_id}", summary="Get a game card")
def get_card(svc: Svc, card_id: str) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.get_card(card_id))


@router.put("/{card_id}", dependencies=[ADMIN], summary="Update a game card")
def update_card(svc: Svc, card_id: str, body: JsonObject) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.update_card(card_id, body))


@router.delete("/{card_id}", dependencies=[ADMIN], status_code=204, summary="Delete a game card")
def delete_card(svc: Svc, card_id: str) -> None:
    svc.gamecards.delete_card(card_id)


@router.get("/{card_id}/versions", summary="Versions, newest first")
def list_versions(svc: Svc, card_id: str) -> list[GameVersion]:
    card = svc.gamecards.get_card(card_id)
    return [svc.gamecards.redacted_version(card, v) for v in sorted_versions(card)]


@router.post("/{card_id}/versions", dependencies=[ADMIN], status_code=201, summary="Add a version")
def add_version(svc: Svc, card_id: str, body: JsonObject) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.add_version(card_id, body))


@router.put("/{card_id}/versions/{version}/status", dependencies=[ADMIN], summary="Deprecate or re-activate a version")
def set_version_status(svc: Svc, card_id: str, version: str, body: VersionStatusBody) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.set_version_status(card_id, version, body.status))


@router.delete("/{card_id}/versions/{version}", dependencies=[ADMIN], summary="Remove a version")
def remove_version(svc: Svc, card_id: str, version: str) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.remove_version(card_id, version))


@router.get("/{card_id}/default-version", summary="The version new instances get")
def get_default_version(svc: Svc, card_id: str) -> GameVersion:
    card = svc.gamecards.get_card(card_id)
    version = default_version(card)
    if version is None:
        raise NotFound("default version of game card", card_id)
    return svc.gamecards.redacted_version(card, version)


@router.put("/{card_id}/default-version", dependencies=[ADMIN], summary="Choose the default version")
def set_default_version(svc: Svc, card_id: str, body: DefaultVersionBody) -> GameCard:
    return svc.gamecards.redacted(svc.gamecards.set_default_version(card_id, body.version))
