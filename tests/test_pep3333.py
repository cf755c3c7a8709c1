"""The handler outside FC: a correct PEP 3333 application under any WSGI server.

Under the standard library's wsgiref server, mounted below ``/mnt`` the way a WSGI dispatcher
mounts an app (``SCRIPT_NAME``), over real HTTP on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import shift_path_info

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop


async def where(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "root_path": request.scope["root_path"],
            "path": request.url.path,
            "for": str(request.url_for("where")),
            "body": (await request.body()).decode(),
        },
        headers={
            # FC would own all of these; a plain WSGI server passes them on.
            "x-fc-trace": "app",
            "content-disposition": 'attachment; filename="where.json"',
            "server": "app-server",
            "date": "Wed, 21 Oct 2015 07:28:00 GMT",
        },
    )


app = Starlette(routes=[Route("/where", where, methods=["GET", "POST"], name="where")])


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mounted(loop: SharedLoop) -> Iterator[str]:
    handler = Bridge(app, lifespan="off", loop=loop)

    def dispatcher(environ: dict[str, Any], start_response: Any) -> Any:
        if shift_path_info(environ) != "mnt":  # moves "/mnt" into SCRIPT_NAME
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not mounted"]
        return handler(environ, start_response)

    server: WSGIServer = make_server("127.0.0.1", 0, dispatcher, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_script_name_is_the_root_path_and_urls_keep_it(mounted: str) -> None:
    response = httpx.post(f"{mounted}/mnt/where", content=b"hello", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "root_path": "/mnt",
        "path": "/mnt/where",
        "for": f"{mounted}/mnt/where",
        "body": "hello",
    }


def test_headers_fc_would_own_pass_through_and_the_apps_content_length_is_kept(
    mounted: str,
) -> None:
    response = httpx.get(f"{mounted}/mnt/where", timeout=10)
    assert response.headers["x-fc-trace"] == "app"
    assert response.headers["content-disposition"] == 'attachment; filename="where.json"'
    assert response.headers["server"] == "app-server"
    assert response.headers["date"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert response.headers["content-length"] == str(len(response.content))
