"""Unknown query parameters are an error, as unknown body fields are.

FastAPI ignores a query parameter that no route parameter declares, so a typo
(``?tags.profile=dr`` for ``tag.profile``) silently widened a filter to everything. This
dependency, installed on the app, compares each request's parameters with what its
route declares and answers 422 naming the first unknown one.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from .tags import TAG_PARAM_PREFIX, tag_pairs

# Per route, kept on the route itself (a dict keyed by id() would go stale when an app is
# dropped and another's route takes the address): the names it declares, and whether it
# takes tag.<key> filters.
_KNOWN = "_taskmill_known_query"


def _tree(dependant: Dependant) -> list[Dependant]:
    """The route's dependant and every dependency under it."""
    return [dependant, *(d for sub in dependant.dependencies for d in _tree(sub))]


def _known(route: APIRoute) -> tuple[frozenset[str], bool]:
    known: tuple[frozenset[str], bool] | None = getattr(route, _KNOWN, None)
    if known is None:
        tree = _tree(route.dependant)
        names = frozenset(field.alias for d in tree for field in d.query_params)
        known = (names, any(d.call is tag_pairs for d in tree))
        setattr(route, _KNOWN, known)
    return known


async def reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    names, tag_filters = _known(route)
    for name in request.query_params:
        if name in names or (tag_filters and name.startswith(TAG_PARAM_PREFIX)):
            continue
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "input": request.query_params[name],
                }
            ]
        )
