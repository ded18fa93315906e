"""A household's access report: who viewed which of its photos, when and why, for a supervisor or auditor to hand over."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam

from gateway.console.access import ACCESS_REPORT
from gateway.console.auth import Session
from gateway.console.deps import ConsoleDep, require
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.models import AccessReport
from gateway.governance import subject

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])

CustomerId = Annotated[str, PathParam(pattern=subject.CUSTOMER_ID.pattern, description="Customer id")]


@api.get("/customers/{customer}/access-report", response_model=AccessReport,
         responses={**API_REFUSALS, 404: refused("no such customer")})
async def api_access_report(customer: CustomerId, console: ConsoleDep, s: Session = Depends(require(*ACCESS_REPORT))):
    """Who viewed which of the household's photos, when and why (supervisor, auditor); nothing else of
    any staff member. The same as `vericam subject access-report CUSTOMER --json`. Audited."""
    with http_errors({subject.SubjectError: 404}):
        return subject.access_report(console.store, customer, s.user, s.role, console.clock(), reads=console.reads)
