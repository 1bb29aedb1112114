"""An order's journey through the pipeline, as its page shows it: built from the order and the
gateway's live events for it (GET /v1/orders/{id}/events), each step with its time after the
order was created. Plain data: the page renders it, the tests read it."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

CREATED: Final = "created"
PUBLISHED: Final = "published"
STOCK_CONFIRMED: Final = "stock_confirmed"
AWARDED: Final = "awarded"
DEAD_LETTERED: Final = "dead_lettered"


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    done: bool = False
    # When it was reached; None when not yet, or when the event does not say.
    at: datetime | None = None
    note: str = ""
    failed: bool = False


@dataclass
class Journey:
    """Created (with its stock reserved: the gateway answers only once both are done), published
    by the outbox relay, its stock confirmed by inventory and its points awarded by loyalty (the
    two consumers work side by side, so either may come first); any dead letter of the order on
    the side."""

    created_at: datetime
    published_at: datetime | None = None
    published: bool = False
    confirmation: dict[str, Any] | None = None
    award: dict[str, Any] | None = None
    dead_letters: dict[int, dict[str, Any]] = field(default_factory=dict)

    def apply(self, name: str, data: dict[str, Any]) -> bool:
        """Take one live event; False when it changes nothing (a copy, or an event the page does not show)."""
        if name == "order.created" and not self.published:
            self.published = True
            self.published_at = _time(data.get("published_at"))
            return True
        if name == "stock.confirmed" and self.confirmation is None:
            self.confirmation = data
            return True
        if name == "points.awarded" and self.award is None:
            self.award = data
            return True
        if name == "order.dead_lettered":
            sequence = data.get("dead_letter_sequence")
            if isinstance(sequence, int) and sequence not in self.dead_letters:
                self.dead_letters[sequence] = data
                return True
        return False

    @property
    def finished(self) -> bool:
        return self.award is not None and self.confirmation is not None

    def steps(self) -> list[Step]:
        steps = [
            Step(CREATED, "Created, stock reserved", True, self.created_at),
            Step(PUBLISHED, "Published to the pipeline", self.published, self.published_at),
        ]
        if self.confirmation is not None:
            note = "taken again after its reservation had expired" if self.confirmation.get("late") else ""
            at = _time(self.confirmation.get("confirmed_at"))
            steps.append(Step(STOCK_CONFIRMED, "Stock confirmed", True, at, note))
        elif not self.dead_letters:
            steps.append(Step(STOCK_CONFIRMED, "Stock confirmed"))
        for sequence, letter in sorted(self.dead_letters.items()):
            note = f"{letter.get('consumer')} gave up ({letter.get('reason')}); dead letter #{sequence}"
            if letter.get("error"):
                note += f": {letter.get('error_class')}: {letter.get('error')}"
            at = _time(letter.get("dead_lettered_at"))
            steps.append(Step(DEAD_LETTERED, "Dead-lettered", True, at, note, failed=True))
        if self.award is not None:
            note = f"{self.award.get('points')} points, balance {self.award.get('balance_after')}"
            steps.append(Step(AWARDED, "Points awarded", True, _time(self.award.get("awarded_at")), note))
        elif not self.dead_letters:
            steps.append(Step(AWARDED, "Points awarded"))
        return steps

    def after_order(self, step: Step) -> str:
        """`+12 ms`, `+1.4 s`, `+3 min`: how long after the order's creation a step was reached."""
        if step.at is None:
            return ""
        seconds = max((step.at - self.created_at).total_seconds(), 0.0)
        if seconds < 1:
            return f"+{round(seconds * 1000)} ms"
        if seconds < 120:
            return f"+{seconds:.1f} s"
        return f"+{round(seconds / 60)} min"


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
