"""The protocol comparison (`make bench-protocols`, `orderflow bench-protocols`): gRPC unary, bidi
streaming (a stream per caller, and one stream every caller shares), HTTP/1.1 JSON, NATS
request-reply and JetStream (publish awaited, publish async, pull consume + ack), alone, in Python
on this machine, with the same payload and the same concurrency.

For each: operations per second, p50 and p99 latency, and CPU per operation of the echo server,
nats-server and the load generator, each a process of its own. Shown beside the seed article's Go
figures. Modules: `run` (the rows and their order), `loads` (client side), `grpc_echo`, `http_echo`
and `nats_echo` (the servers), `measuring` (closed loop, warm-up, window, CPU), `report` (table,
JSON, markdown).
"""

LOOPBACK = "127.0.0.1"
"""Where every server of the comparison listens: client and servers share this machine."""
