"""Static assets the dashboard needs, served by the API itself so it works offline.

`/static/plotly.min.js` is the Plotly.js bundle shipped inside the installed `plotly` Python package
(`plotly/package_data/plotly.min.js`); the browser never fetches it from the internet. The file is
located when first asked for (the package is found, not imported).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

router = APIRouter(prefix="/static", tags=["assets"], include_in_schema=False)

CACHE_FOR = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}


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
