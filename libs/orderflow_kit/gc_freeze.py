"""Start-up's objects are left out of garbage collection.

A service imports its libraries and builds its app once (FastAPI's routes and models, pydantic's
validators, gRPC's stubs, SQLAlchemy's compiled statements): hundreds of thousands of objects
that live as long as the process. CPython's collector would go through all of them at every
full collection, under load several times a minute (with py-spy: 12 % of the gateway's CPU in
`gc_collect_main`). `gc.freeze()` moves them to a generation the collector never visits; what is
made afterwards is collected as usual (Instagram's practice, and what the gc module's
documentation advises for this).

It changes the whole process, so a service's process entry (its `main`) calls it once its
imports are done (the gateway: once its app is built too), never code that tests run inside
their own process (`serve`, an app's lifespan): there it would freeze the test run's objects."""

import gc


def freeze_start_up_objects() -> None:
    """Collect what start-up left over, then freeze the rest."""
    gc.collect()
    gc.freeze()
