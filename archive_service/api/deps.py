"""FastAPI dependencies shared by the app and its routers: the services, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from archive_service.errors import NotAuthenticated
from archive_service.ports import Caller
from archive_service.wiring import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_caller(request: Request, services: ServicesDep) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthenticated("missing API key (Authorization: Bearer <key>)")
    return services.tenancy.authenticate(key.strip())


CallerDep = Annotated[Caller, Depends(get_caller)]
