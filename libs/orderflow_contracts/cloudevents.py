"""CloudEvents 1.0 in binary content mode over NATS: attributes travel as `ce-*` headers, the
payload is the message body untouched, and `Nats-Msg-Id` carries the broker's dedupe key.

The dedupe key is separate from `ce-id` on purpose: a replay needs a new `Nats-Msg-Id` (the
original is still in the broker's duplicate window) but the same `ce-id`, so consumers still
recognise the event."""

from dataclasses import dataclass, field
from datetime import datetime

SPEC_VERSION = "1.0"
NATS_MSG_ID = "Nats-Msg-Id"
TRACEPARENT = "traceparent"
REQUEST_ID = "ce-requestid"
REQUIRED_HEADERS = ("ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time")


class MalformedEvent(ValueError):
    """The message is not a CloudEvent we can read: a permanent error, never worth a retry."""


@dataclass(frozen=True)
class CloudEvent:
    id: str
    type: str
    source: str
    time: datetime
    data: bytes
    subject: str | None = None
    content_type: str = "application/json"
    extensions: dict[str, str] = field(default_factory=dict)

    def to_headers(self, msg_id: str | None = None) -> dict[str, str]:
        """Headers for publishing; `msg_id` defaults to the event id (first publish)."""
        headers = {
            "ce-specversion": SPEC_VERSION,
            "ce-id": self.id,
            "ce-type": self.type,
            "ce-source": self.source,
            "ce-time": self.time.isoformat(),
            "content-type": self.content_type,
            NATS_MSG_ID: msg_id or self.id,
        }
        if self.subject is not None:
            headers["ce-subject"] = self.subject
        headers.update(self.extensions)
        return headers

    @classmethod
    def from_message(cls, headers: dict[str, str] | None, data: bytes) -> "CloudEvent":
        headers = headers or {}
        missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
        if missing:
            raise MalformedEvent(f"missing CloudEvents headers: {', '.join(missing)}")
        if headers["ce-specversion"] != SPEC_VERSION:
            raise MalformedEvent(f"unsupported ce-specversion {headers['ce-specversion']!r}")
        try:
            time = datetime.fromisoformat(headers["ce-time"])
        except ValueError as error:
            raise MalformedEvent(f"ce-time is not an RFC 3339 time: {headers['ce-time']!r}") from error
        known = {*REQUIRED_HEADERS, "ce-subject", "content-type", NATS_MSG_ID}
        return cls(
            id=headers["ce-id"],
            type=headers["ce-type"],
            source=headers["ce-source"],
            time=time,
            data=data,
            subject=headers.get("ce-subject"),
            content_type=headers.get("content-type", "application/json"),
            extensions={
                k: v for k, v in headers.items() if k not in known and (k.startswith("ce-") or k == TRACEPARENT)
            },
        )
