"""The audit log (admin only): who changed what, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from console.hub.api.deps import Svc
from console.hub.auth import ADMIN
from console.service import AuditEntry

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], dependencies=[ADMIN])


@router.get("", summary="Audit log entries, newest first")
def query_audit(
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    actor: Annotated[str | None, Query(max_length=256, description="A token's name, `unix socket`, "
                                                                  "`node:<id>`, `anonymous`")] = None,
    kind: Annotated[str | None, Query(max_length=256, description="Target kind: node, run, ...")] = None,
    target: Annotated[str | None, Query(max_length=256, description="Target id")] = None,
) -> list[AuditEntry]:
    return svc.audit.query(limit=limit, actor=actor, kind=kind, target=target)
