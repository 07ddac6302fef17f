"""Static assets the dashboard needs, served by the API itself so it works offline.

`/favicon.ico` is xsell's icon (an SVG, linked from every page), so a browser's icon request never
fails. `/static/plotly.min.js` is the Plotly.js bundle shipped inside the installed `plotly` Python package
(`plotly/package_data/plotly.min.js`); the browser never fetches it from the internet. The file is
located when first asked for (the package is found, not imported).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, Response

router = APIRouter(prefix="/static", tags=["assets"], include_in_schema=False)
icon_router = APIRouter(tags=["assets"], include_in_schema=False)

CACHE_FOR = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#1f3a5f"/>'
    '<path d="M9 9l14 14M23 9L9 23" stroke="#fff" stroke-width="4" stroke-linecap="round"/></svg>'
)


@cache
def plotly_bundle() -> Path | None:
    """Path of the Plotly.js bundle of the installed `plotly` package, or None if it is not installed."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundle = Path(folder) / "package_data" / "plotly.min.js"
        if bundle.is_file():
            return bundle
    return None


@router.get("/plotly.min.js", response_class=FileResponse)
def read_plotly_js() -> FileResponse:
    """The Plotly.js bundle (404 with the fix when the `plotly` package is missing)."""
    bundle = plotly_bundle()
    if bundle is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail="plotly is not installed in this environment: run `make install`.",
        )
    return FileResponse(bundle, media_type="text/javascript", headers=CACHE_FOR)


@icon_router.get("/favicon.ico")
def read_icon() -> Response:
    """xsell's icon, as SVG (every page links it with `<link rel="icon">`)."""
    return Response(ICON_SVG, media_type="image/svg+xml", headers=CACHE_FOR)
