"""JetStream names shared by producers, consumers and tools (their configurations: orderflow_kit.nats)."""

ORDERS_STREAM = "ORDERS"
ORDERS_SUBJECTS = ["orders.>"]
# Every subject of the stream carries one event type. Consumers filter on the one they handle,
# so a new subject reaches none of them by accident.
ORDER_CREATED_SUBJECT = "orders.created"
# Published by loyalty after it awarded an order's points (for live feeds); nothing consumes it
# as part of the order pipeline.
POINTS_AWARDED_SUBJECT = "orders.points_awarded"
# Published by inventory after it confirmed an order's reservation (the stock is sold for good), for
# live feeds like the one above; nothing in the pipeline consumes it.
STOCK_CONFIRMED_SUBJECT = "orders.stock_confirmed"

DEAD_LETTER_STREAM = "DEAD_LETTERS"
DEAD_LETTER_SUBJECTS = ["dlq.>"]

# JetStream sequences are unsigned 64-bit integers; whoever reads on "after sequence N" asks for
# N + 1, so N is at most one less.
MAX_SEQUENCE = 2**64 - 1
MAX_SEQUENCE_AFTER = MAX_SEQUENCE - 1


def dead_letter_subject(consumer: str, subject: str) -> str:
    """Where consumer C parks what it could not process from subject S: `dlq.C.S`."""
    return f"dlq.{consumer}.{subject}"
