"""The FastAPI benchmark app as a module attribute, for servers given a ``module:attr`` TARGET."""

from bench.apps import make_fastapi_app

app = make_fastapi_app()
