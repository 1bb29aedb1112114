"""Connection URLs carry credentials (`nats://user:password@host:port`); whatever prints or logs
them masks the secret first, so a log line, a banner or an error message never shows a password."""

import re

MASK = "***"
# scheme://user:password@ : the password.
_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@/\s]+@", re.IGNORECASE)
# nats://token@ : NATS reads a user without a password as a token, itself a secret.
_NATS_TOKEN = re.compile(r"(?P<head>\b(?:nats|tls|ws|wss)://)[^:@/\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the password (or NATS token) of every URL in it replaced by ***."""
    # Both patterns need a `://` and an `@`: two substring tests, far cheaper than the regular
    # expressions, and false for almost every log value.
    if "@" not in text or "://" not in text:
        return text
    return _NATS_TOKEN.sub(rf"\g<head>{MASK}@", _PASSWORD.sub(rf"\g<head>{MASK}@", text))
