"""The NATS request-reply responder: `python -m orderflow_bench.protocols.nats_echo`, connected to
ORDERFLOW_BENCH_NATS_URL, in a process of its own. It answers each request on the echo subject with
the same bytes, in a queue group as a service would."""

import asyncio
import os

import nats
import uvloop
from nats.aio.msg import Msg

ECHO_SUBJECT = "bench.echo"


async def serve(url: str) -> None:
    connection = await nats.connect(url, name="bench-echo")

    async def reply(message: Msg) -> None:
        await message.respond(message.data)

    await connection.subscribe(ECHO_SUBJECT, queue="echo", cb=reply)
    await connection.flush()
    await asyncio.Event().wait()  # until SIGTERM ends the process


if __name__ == "__main__":
    uvloop.run(serve(os.environ["ORDERFLOW_BENCH_NATS_URL"]))
