"""What the bench runs: the kinds of scenario, and the plan built from the command line's choices."""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

OPEN_LOOP_CONNECTIONS = 256
"""An open loop's client opens at most this many connections; an order due while all are busy
waits for one, and that wait counts in its latency (measured from when it was due)."""


class Kind(StrEnum):
    """The scenario kinds `--scenario` selects; `open` runs once per offered rate."""

    CLOSED = "closed"  # closed loop at N connections, spread over the SKUs: the most it takes
    HOT = "hot"  # closed loop, every order for the one hot SKU: contention on one product row
    IDEMPOTENT = "idempotent"  # closed loop, spread, each order with a unique Idempotency-Key
    OPEN = "open"  # open loop at a fixed offered rate, spread: latency as a client sees it


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    duration: float
    # Closed loop: how many requests are in flight at once, each sent when the previous answered.
    # Open loop: at most this many connections (OPEN_LOOP_CONNECTIONS).
    connections: int
    # Open loop: orders offered per second, whatever the answers; None for a closed loop.
    rate: float | None = None

    @property
    def closed(self) -> bool:
        return self.rate is None

    @property
    def hot(self) -> bool:
        return self.kind is Kind.HOT

    @property
    def idempotency_keys(self) -> bool:
        return self.kind is Kind.IDEMPOTENT

    @property
    def title(self) -> str:
        """How the report names it: the loop, and what the orders are for."""
        loop = f"closed loop, {self.connections} connections" if self.rate is None else f"open loop, {self.rate:g}/s"
        target = "one hot SKU" if self.hot else "spread over the SKUs"
        return f"{loop}, {target}" + (", Idempotency-Key" if self.idempotency_keys else "")


def plan(kinds: Sequence[Kind], *, duration: float, connections: int, rates: Sequence[float]) -> list[Scenario]:
    """The scenarios in a fixed order (closed loops first, then the open loop by rising rate),
    whatever order the kinds were given in."""
    scenarios: list[Scenario] = []
    for kind in Kind:
        if kind not in kinds:
            continue
        if kind is Kind.OPEN:
            scenarios += [
                Scenario(f"open-{rate:g}", kind, duration, OPEN_LOOP_CONNECTIONS, rate) for rate in sorted(set(rates))
            ]
        else:
            scenarios.append(Scenario(f"{kind}-{connections}", kind, duration, connections))
    return scenarios
