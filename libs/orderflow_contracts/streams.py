"""JetStream names shared by producers, consumers and tools (see ARCHITECTURE.md, Contracts)."""

ORDERS_STREAM = "ORDERS"
ORDERS_SUBJECTS = ["orders.>"]
ORDER_CREATED_SUBJECT = "orders.created"

DEAD_LETTER_STREAM = "DEAD_LETTERS"
DEAD_LETTER_SUBJECTS = ["dlq.>"]


def dead_letter_subject(consumer: str, subject: str) -> str:
    """Where consumer C parks what it could not process from subject S: `dlq.C.S`."""
    return f"dlq.{consumer}.{subject}"
