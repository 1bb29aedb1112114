"""Rate limits for tests that are not about them: these send bursts (hundreds of orders at once,
schemathesis) from one address and one token, so every gateway they start is given limits no
test reaches, explicitly. tests/integration/gateway/test_rate_limits.py sets low ones."""

from typing import Final

GENEROUS_RATE_LIMITS: Final = {
    "rate_limit_ip_per_second": 100_000.0,
    "rate_limit_ip_burst": 100_000,
    "rate_limit_customer_per_second": 100_000.0,
    "rate_limit_customer_burst": 100_000,
}
# The same as ORDERFLOW_* environment variables, for gateways run as processes.
GENEROUS_RATE_LIMITS_ENV: Final = {
    f"ORDERFLOW_{name.upper()}": str(value) for name, value in GENEROUS_RATE_LIMITS.items()
}
