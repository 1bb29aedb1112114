"""The developer tooling: `orderflow up`, the embedded servers, the pipeline tests and benchmarks run.

It spawns processes (servers, services) from processes that hold gRPC channels (the readiness
probes, the tests' clients). grpcio's fork handlers, on by default, restart its event-engine
poller in the child of such a fork, and the child aborts on the descriptors it closes before exec
(grpc/grpc#43055): a server that "exited with code -6" before it ran. Nothing here needs gRPC in
a forked child, so the handlers are off, set before grpc is imported, which reads it once."""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
