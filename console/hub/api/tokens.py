"""API tokens (admin only): create one (the token is in that answer only), list them, revoke one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from console.hub.api.deps import Svc
from console.hub.auth import ADMIN, principal_of
from console.models import ApiToken, Role, utcnow

__all__ = ["NewToken", "TokenAnswer", "TokenBody", "router"]

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], dependencies=[ADMIN])


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    """Who or what will hold it; the actor in the audit log."""
    role: Role
    ttl_days: Annotated[float, Field(gt=0, le=3650)] | None = None
    """Days until it expires; none: never."""


class TokenAnswer(BaseModel):
    """An API token as listed: never its secret, never its HMAC."""

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    expired: bool

    @classmethod
    def of(cls, record: ApiToken) -> TokenAnswer:
        return cls(id=record.id, name=record.name, role=record.role, created_at=record.created_at,
                   created_by=record.created_by, expires_at=record.expires_at, expired=record.expired(utcnow()))


class NewToken(TokenAnswer):
    token: str
    """`ID.SECRET`: shown in this answer only."""


@router.post("", status_code=201, summary="Create an API token (shown in this answer only)")
def create_token(svc: Svc, request: Request, body: TokenBody) -> NewToken:
    principal = principal_of(request)
    ttl = timedelta(days=body.ttl_days) if body.ttl_days is not None else None
    record, token = svc.api_tokens.create(body.name, body.role, principal.name if principal else "api", ttl)
    return NewToken(**TokenAnswer.of(record).model_dump(), token=token)


@router.get("", summary="List API tokens (without their secrets)")
def list_tokens(svc: Svc) -> list[TokenAnswer]:
    return [TokenAnswer.of(t) for t in svc.api_tokens.list()]


@router.delete("/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_token(svc: Svc, token_id: str) -> None:
    """It stops working at once (REST and gRPC)."""
    svc.api_tokens.revoke(token_id)
