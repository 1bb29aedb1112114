"""Start-up's objects are left out of garbage collection.

A service imports its libraries and builds its app once (FastAPI's routes and models, pydantic's
validators, gRPC's stubs, SQLAlchemy's compiled statements): hundreds of thousands of objects
that live as long as the process. CPython's collector would go through all of them at every
full collection, under load several times a minute (with py-spy: 12 % of the gateway's CPU in
`gc_collect_main`). `gc.freeze()` once the service is set up moves them to a generation the
collector never visits; what is made afterwards is collected as usual (Instagram's practice,
and what the gc module's documentation advises for this)."""

import gc


def freeze_start_up_objects() -> None:
    """Call once set up, before serving: collect what start-up left over, then freeze the rest."""
    gc.collect()
    gc.freeze()
