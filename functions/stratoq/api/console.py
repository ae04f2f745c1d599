"""The task console: the static files of the web UI, served at `/console`.

The files (`static/`: one page, one script, one style sheet and the vendored Alpine.js
CSP build) hold no data and need no key, so these routes are public, as `/health` is (the
template and the local gateway exempt them from the authorizer). The page signs in with
an API key it keeps in the tab's session storage and calls the `/v1` JSON API with it,
like any other client: the key's tenant and scopes bound what it shows.

Every answer carries a Content-Security-Policy that allows scripts from this origin only
(no inline script, no `eval`: Alpine's CSP build needs none) and no framing, so a task's
payload that holds markup cannot run even if some code put it into the page as HTML.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from stratoq.api.common import answer
from stratoq.api.errors import error_body

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Small files, and a new version must show at once after a deploy.
    "Cache-Control": "no-cache",
}
# Only these names are served (no path from the request reaches the file system).
FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "alpine-csp.min.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_VENDORED = {"alpine-csp.min.js": "vendor/alpine-csp-3.17.4.min.js"}


@cache
def _read(name: str) -> str:
    return (resources.files("stratoq.api") / "static" / name).read_text(encoding="utf-8")


def _file(name: str, content_type: str) -> Response[str]:
    return Response(200, content_type, _read(name), headers=dict(HEADERS))


def register(app: APIGatewayRestResolver) -> None:
    """Add the console's routes to `app` (outside the OpenAPI document: not the API)."""

    @app.get("/console", security=[], include_in_schema=False)
    def console_page() -> Response[str]:
        if app.current_event.path.endswith("/"):
            # `/console/` would resolve the page's relative links under it: send the
            # browser to `/console` (relative, so a deployed stage's prefix stays).
            return Response(308, "text/plain", "", headers={**HEADERS, "Location": "../console"})
        return _file("index.html", "text/html; charset=utf-8")

    @app.get("/console/<name>", security=[], include_in_schema=False)
    def console_file(name: Annotated[str, Path(max_length=64)]) -> Response[str]:
        content_type = FILES.get(name)
        if content_type is None:
            return answer(404, error_body(f"no console file {name!r}"))
        return _file(_VENDORED.get(name, name), content_type)
