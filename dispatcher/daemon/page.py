"""The operator's page at `/`: static HTML, CSS and one small script shipped in the package (see page/).

The page is a client of the same JSON API applications use (`/v1/...` with the Bearer key the operator
types in, `/healthz` and `/metrics`); it has no route of its own beyond these files. What keeps it safe:
a strict Content-Security-Policy (no inline script or style, nothing from another origin, no framing),
no cookies (the key lives in the tab's sessionStorage and travels as the Authorization header, so there
is nothing for a forged cross-site request to ride on), and a script that writes every value as text.
The files are read once, when the routes are built: serving them costs no disk access.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

HERE = Path(__file__).with_name("page")
FILES = {"page.js": "text/javascript", "page.css": "text/css"}  # served under /page/; nothing else is
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def routes() -> list[web.RouteDef]:
    """GET / (the page) and GET /page/{name} (its script and style sheet)."""
    index = (HERE / "index.html").read_bytes()
    assets = {name: ((HERE / name).read_bytes(), kind) for name, kind in FILES.items()}

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=index, content_type="text/html", charset="utf-8", headers=HEADERS)

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(headers=HEADERS)
        body, kind = found
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=HEADERS)

    return [web.get("/", page), web.get("/page/{name}", asset)]
