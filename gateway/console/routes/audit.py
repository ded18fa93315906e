"""The audit trail for the auditor: filtered records, newest first, with the hash chain's verdict; each view audited."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from gateway.console import data
from gateway.console.access import AUDIT
from gateway.console.auth import Session
from gateway.console.context import Console
from gateway.console.deps import ConsoleDep, require
from gateway.console.errors import API_REFUSALS
from gateway.console.models import AuditTrail
from gateway.console.params import MAX_MS, parse_when
from gateway.governance import audit

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def searched(console: Console, s: Session, what, who, subject, from_ms, to_ms) -> list[dict]:
    filters = {"what": what, "who": who, "subject": subject, "from_ms": from_ms, "to_ms": to_ms}
    rows = data.audit_trail(console.store, what, who, subject, from_ms, to_ms)
    console.record_read(s, "view audit trail", "audit", detail={"filters": filters, "rows": len(rows)},
                        shown=filters)
    return rows


@pages.get("/audit")
async def audit_page(request: Request, console: ConsoleDep, what: str = Query("", max_length=100),
                     who: str = Query("", max_length=100), subject: str = Query("", max_length=200),
                     since: str = Query("", alias="from", max_length=40),
                     until: str = Query("", alias="to", max_length=40),
                     s: Session = Depends(require(*AUDIT))):
    store = console.store
    rows = searched(console, s, what or None, who or None, subject or None, parse_when(since, "from"),
                    parse_when(until, "to"))
    return console.page(request, "audit.html", s, rows=rows, kinds=data.audit_kinds(store),
                        verdict=audit.verify(store),
                        f={"what": what, "who": who, "subject": subject, "from": since, "to": until})


@api.get("/audit", responses=API_REFUSALS, response_model=AuditTrail)
async def api_audit(console: ConsoleDep, what: str | None = Query(None, max_length=100),
                    who: str | None = Query(None, max_length=100),
                    subject: str | None = Query(None, max_length=200),
                    from_ms: int | None = Query(None, ge=0, le=MAX_MS),
                    to_ms: int | None = Query(None, ge=0, le=MAX_MS),
                    s: Session = Depends(require(*AUDIT))):
    """The audit trail (auditor), newest first, at most 500, with the chain's verdict. Audited."""
    entries = searched(console, s, what, who, subject, from_ms, to_ms)
    v = audit.verify(console.store)
    return {"chain_ok": v.ok, "problems": v.problems, "records": v.records, "entries": entries}
