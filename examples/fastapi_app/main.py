"""A small FastAPI app deployed to Function Compute with fc-bridge.

Build its code package with ``fc-bridge package`` and deploy it with one of the templates
(``s.yaml``: FC 3.0; ``s.fc2.yaml``: FC 2.0; ``s.web.yaml``: a web function), handler
``main.handler``; run it locally with ``make run``. The lifespan opens a SQLite database that
every request shares, whichever thread FC calls the handler from, and closes it in FC's
pre_stop hook.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from fastapi import Cookie, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from fc_bridge import bridge


class Store:
    """Items kept in a SQLite database opened by the lifespan; writes are serialised."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        self.lock = asyncio.Lock()  # bound to the loop the lifespan ran on, used by every request

    async def add(self, name: str, price: float) -> int:
        async with self.lock:
            cursor = self.db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (name, price))
            self.db.commit()
            return int(cursor.lastrowid or 0)

    def all(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()
        return [{"id": id_, "name": name, "price": price} for id_, name, price in rows]


class State(TypedDict):
    store: Store


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    store = Store()
    try:
        yield {"store": store}
    finally:
        store.db.close()


# Swagger UI and ReDoc are served by this function, not from a CDN (fastapi-offline): docs
# work offline too, and behind FC's URL prefix, since every URL is built from the root_path.
app = FastAPIOffline(title="fc-bridge example", lifespan=lifespan)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(ge=0)
    tags: list[str] = []


@app.get("/")
async def index() -> dict[str, str]:
    return {"message": "Hello from Function Compute"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, limit: int = 10) -> dict[str, Any]:
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items", status_code=201)
async def create_item(item: Item, request: Request) -> dict[str, Any]:
    store: Store = request.state.store
    item_id = await store.add(item.name, item.price)
    return {"id": item_id, **item.model_dump()}


@app.get("/items")
async def list_items(request: Request) -> list[dict[str, Any]]:
    store: Store = request.state.store
    return store.all()


@app.post("/upload")
async def upload(
    file: Annotated[UploadFile, File()], note: Annotated[str, Form()] = ""
) -> dict[str, Any]:
    data = await file.read()
    return {
        "filename": file.filename,
        "content_type": file.content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": note,
    }


@app.post("/login")
async def login(request: Request, username: Annotated[str, Form()]) -> RedirectResponse:
    # request.url_for carries the root_path (app.url_path_for would drop FC's URL prefix).
    response = RedirectResponse(request.url_for("me").path, status_code=303)
    response.set_cookie("session", f"user-{username}", httponly=True, samesite="lax")
    response.set_cookie("theme", "dark")
    return response


@app.get("/me")
async def me(session: Annotated[str | None, Cookie()] = None) -> dict[str, str]:
    if session is None:
        raise HTTPException(status_code=401, detail="Not logged in")
    return {"session": session}


# Checking Set-Cookie on your deployment (README): FC 3.0 returns headers as a JSON object,
# and how its gateway turns several Set-Cookie values back into header lines is undocumented.
# Open /cookies/set in a browser: /cookies/check then says whether all three cookies arrived.
CHECKED_COOKIES = ("fcb_one", "fcb_two", "fcb_three")


@app.get("/cookies/set")
async def set_cookies(request: Request) -> RedirectResponse:
    response = RedirectResponse(request.url_for("check_cookies").path, status_code=303)
    for name in CHECKED_COOKIES:  # Expires holds a comma: joined values would break there
        response.set_cookie(name, "1", max_age=300, expires=300, samesite="lax")
    return response


@app.get("/cookies/check")
async def check_cookies(request: Request) -> dict[str, Any]:
    received = [name for name in CHECKED_COOKIES if request.cookies.get(name) == "1"]
    return {"received": received, "all_arrived": len(received) == len(CHECKED_COOKIES)}


@app.get("/go")
async def go(request: Request) -> RedirectResponse:
    # url_for carries the root_path: on FC's default address the prefix is kept.
    return RedirectResponse(str(request.url_for("read_item", item_id=1)))


@app.get("/stream")
async def stream(n: int = 3) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        for i in range(n):
            yield f"line {i}\n"
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    """What FC says about this invocation. Credentials are live secrets: never echo them."""
    context = request.scope.get("fc.context")
    function = getattr(context, "function", None)
    return {
        "request_id": getattr(context, "request_id", None),
        "function": getattr(function, "name", None),
        "region": getattr(context, "region", None),
        "has_credentials": getattr(context, "credentials", None) is not None,
        "root_path": request.scope.get("root_path", ""),
    }


handler = bridge(app)
initializer = handler.initializer
pre_freeze = handler.pre_freeze
pre_stop = handler.pre_stop
