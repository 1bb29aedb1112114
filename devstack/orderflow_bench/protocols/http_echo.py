"""The HTTP/1.1 JSON echo server: `python -m orderflow_bench.protocols.http_echo` on 127.0.0.1 and
ORDERFLOW_BENCH_PORT, in a process of its own. FastAPI on uvicorn with httptools, on uvloop, as the
gateway should run; the body goes through a pydantic model both ways, as an API's would."""

import os
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI
from pydantic import BaseModel

from orderflow_bench.protocols import LOOPBACK

ECHO_PATH = "/echo"
HEALTH_PATH = "/healthz"


class Echo(BaseModel):
    """The JSON body both ways: {"payload": "..."}."""

    payload: str


def echo_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post(ECHO_PATH)
    async def echo(body: Echo) -> Echo:
        return body

    @app.get(HEALTH_PATH)
    async def healthz() -> dict[str, Any]:
        return {}

    return app


async def serve(port: int) -> None:
    config = uvicorn.Config(
        echo_app(), host=LOOPBACK, port=port, http="httptools", access_log=False, log_level="warning"
    )
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    uvloop.run(serve(int(os.environ["ORDERFLOW_BENCH_PORT"])))
