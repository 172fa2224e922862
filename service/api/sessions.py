from fastapi import APIRouter, Response

from service.api.deps import ServingDep, SessionIdPath
from service.api.protocol import EventsRequest, SessionResponse, errors

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


_SESSION_LINKS = {  # OpenAPI links: what a client (or a contract fuzzer) can do with the session it created
    op: {"operationId": op, "parameters": {"session_id": "$response.body#/session_id"}}
    for op in ("get_session", "delete_session")
}


@router.post(
    "/{session_id}/events",
    response_model=SessionResponse,
    operation_id="add_events",
    responses={200: {"description": "the session's history", "links": _SESSION_LINKS}, **errors(408, 413, 422, 503)},
)
async def add_events(session_id: SessionIdPath, body: EventsRequest, serving: ServingDep) -> SessionResponse:
    return await serving.add_events(session_id, body.events)


@router.get(
    "/{session_id}", response_model=SessionResponse, operation_id="get_session", responses=errors(404, 422, 503)
)
async def get_session(session_id: SessionIdPath, serving: ServingDep) -> SessionResponse:
    return await serving.get_session(session_id)


@router.delete(
    "/{session_id}", status_code=204, operation_id="delete_session", responses=errors(404, 422, 503)
)
async def delete_session(session_id: SessionIdPath, serving: ServingDep) -> Response:
    await serving.delete_session(session_id)
    return Response(status_code=204)
