"""The API docs over real HTTP: Swagger UI (/docs) and ReDoc (/redoc) load their assets from this server, never a
CDN, so an air-gapped host shows them; with API keys on, the docs, the spec and the assets stay open alike."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_reference_no_other_host_and_their_assets_are_served(live_server, page: str) -> None:
    """Before: /docs loaded swagger-ui from cdn.jsdelivr.net (unpinned, no integrity): blank without the internet."""
    html = httpx.get(live_server.url + page).text
    assert "://" not in html.replace("window.location.origin", ""), html  # no absolute URL: nothing from elsewhere
    urls = asset_urls(html)
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        assert url.startswith("/"), url
        asset = httpx.get(live_server.url + url)
        assert asset.status_code == 200, url
        kind = next(kind for suffix, kind in ASSET_TYPES.items() if url.endswith(suffix))
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000  # the file itself, not an error page


def test_swagger_ui_reads_the_servers_own_spec(live_server) -> None:
    html = httpx.get(live_server.url + "/docs").text
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html  # swagger-ui's default badge calls validator.swagger.io


@pytest.fixture(scope="module")
def keyed(tiny_pipeline) -> Iterator:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    with BackgroundServer(create_app(ServerSettings(api_keys="a-key-0123456789"), pipeline=tiny_pipeline)) as server:
        yield server


def test_with_keys_the_docs_the_spec_and_their_assets_are_open_alike(keyed) -> None:
    """Before: /docs and /openapi.json were open, /redoc needed a key."""
    for page in ("/docs", "/redoc"):
        response = httpx.get(keyed.url + page)
        assert response.status_code == 200, (page, response.text)
        for url in asset_urls(response.text):
            assert httpx.get(keyed.url + url).status_code == 200, url
    assert httpx.get(keyed.url + "/openapi.json").status_code == 200
    assert httpx.get(keyed.url + "/docs/oauth2-redirect").status_code == 200
    assert httpx.get(keyed.url + "/docs/assets/nope.js").status_code == 404  # the open prefix serves files only
    assert httpx.get(keyed.url + "/info").status_code == 401  # the model's routes still need the key
