"""Fault flags over HTTP, for operators (scope admin): read and replace the set every service
watches in the JetStream key-value bucket (orderflow_kit.fault_bucket, docs/fault-flags.md). A PUT
reaches every replica of every service within moments; the environment and the file stay as the
services' other sources, which the bucket overrides flag by flag."""

from typing import Annotated

import structlog
from fastapi import Body, Depends, Request
from fastapi.openapi.models import Example
from pydantic import BaseModel, ConfigDict, Field, Strict

from gateway.auth import AdminPrincipal, authenticated_router
from gateway.broker import BROKER_FAILURES, broker_errors
from gateway.problem_openapi import problem_responses
from gateway.problems import FieldError, Problem
from gateway.routes import PREFIX, require_json
from gateway.upstreams import UpstreamsDep
from orderflow_kit import faults
from orderflow_kit.fault_bucket import StoredFlags, read_flags, write_flags
from orderflow_kit.faults import FLAG_HELP, Fault

router = authenticated_router(f"{PREFIX}/admin/faults", "admin: fault flags")

# A flag's value as JSON: a string as in a spec ("new_msg_id", "loyalty:2", "" for a flag's
# default), a whole number, or true/false for on/off.
FlagValue = str | int | bool
# A flag's name: a JSON object's key is a string, which strict mode would not take for the enum.
FlagName = Annotated[Fault, Strict(False)]


class FaultFlagsIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    flags: dict[FlagName, FlagValue] = Field(
        description="The whole set, replacing the one in force; {} switches every flag off.",
        examples=[{"publish_twice": "new_msg_id", "inventory_delay_ms": 1500}],
    )


class KnownFlag(BaseModel):
    name: str = Field(examples=["inventory_delay_ms"])
    description: str = Field(
        examples=["Inventory reserves the stock, then holds its answer to ReserveStock back N ms."]
    )
    values: str = Field(description="What it takes.", examples=["N, a whole number of milliseconds; 0 is off"])


class FaultFlagsOut(BaseModel):
    bucket: str = Field(description="The key-value bucket every service watches.", examples=["ORDERFLOW_FAULTS"])
    flags: dict[str, str] = Field(
        description="The flags the bucket holds, each value written one way (on/off, new_msg_id, loyalty:2, 1500).",
        examples=[{"publish_twice": "new_msg_id", "inventory_delay_ms": "1500"}],
    )
    revision: int | None = Field(description="The set's revision in the bucket; null when never set.", examples=[4])
    ignored: str | None = Field(
        default=None,
        description="Set when the stored set does not parse (written around this API): no flag of it is in force.",
    )
    known: list[KnownFlag] = Field(description="Every flag there is.")


_EXAMPLES: dict[str, Example] = {
    "slow inventory": {
        "summary": "Inventory answers 1.5 s late",
        "value": {"flags": {"inventory_delay_ms": 1500}},
    },
    "duplicates": {
        "summary": "Every event published twice, loyalty failing twice per message",
        "value": {"flags": {"publish_twice": "new_msg_id", "consumer_fail_first": "loyalty:2"}},
    },
    "healed": {"summary": "Every flag off", "value": {"flags": {}}},
}

_KNOWN = [KnownFlag(name=fault.value, description=about, values=values) for fault, (about, values) in FLAG_HELP.items()]


def _bucket(request: Request) -> str:
    bucket: str = request.app.state.settings.faults_bucket
    return bucket


@router.get("", responses=problem_responses(*BROKER_FAILURES))
async def get_faults(request: Request, _admin: AdminPrincipal, upstreams: UpstreamsDep) -> FaultFlagsOut:
    """The fault flags in the bucket, which every service puts in force, and every flag there is."""
    bucket = _bucket(request)
    js = await upstreams.broker.jetstream()
    with broker_errors():
        stored = await read_flags(js, bucket)
    return _out(bucket, stored)


@router.put(
    "",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 415, 422, *BROKER_FAILURES),
)
async def put_faults(
    request: Request,
    _admin: AdminPrincipal,
    upstreams: UpstreamsDep,
    body: Annotated[FaultFlagsIn, Body(openapi_examples=_EXAMPLES)],
) -> FaultFlagsOut:
    """Replace the whole set of fault flags (scope admin): every replica of every service puts it
    in force within moments. An unknown flag or a value it cannot take is a 422 that writes
    nothing. Not for production: a crash flag kills a service again after every restart."""
    values = {fault.value: _written(value) for fault, value in body.flags.items()}
    try:
        faults.canonical(values)
    except faults.FlagError as error:
        raise Problem(
            422,
            "VALIDATION_FAILED",
            "The request does not match the API's schema; see errors.",
            errors=[FieldError(location=["body", "flags", error.name], message=str(error), type="fault_flag")],
        ) from None
    bucket = _bucket(request)
    js = await upstreams.broker.jetstream()
    with broker_errors():
        stored = await write_flags(js, values, bucket)
    # The access line is the audit trail of who switched which faults on.
    structlog.contextvars.bind_contextvars(faults=stored.values, faults_revision=stored.revision)
    return _out(bucket, stored)


def _written(value: FlagValue) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _out(bucket: str, stored: StoredFlags) -> FaultFlagsOut:
    return FaultFlagsOut(
        bucket=bucket, flags=stored.values, revision=stored.revision, ignored=stored.ignored, known=_KNOWN
    )
