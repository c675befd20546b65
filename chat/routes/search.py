"""Full-text search over the caller's conversations (chat.search)."""

from __future__ import annotations

from ninja import Router

from chat import selectors
from chat.errors import InvalidInput
from chat.schemas import Error, SearchOut

router = Router(tags=["search"])
MAX_LIMIT = 100


@router.get(
    "/search",
    response={200: SearchOut, 400: Error, 401: Error},
    summary="Search your conversations' titles and messages; ranked, with snippets",
)
def search(request, q: str = "", limit: int = 20):
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"must be 1 to {MAX_LIMIT}", field="limit")
    if len(q) > 500:
        raise InvalidInput("must be at most 500 characters", field="q")
    hits = selectors.search_hits(user=request.auth, q=q, limit=limit)
    return {"q": q, "results": [hit.to_wire() for hit in hits]}
