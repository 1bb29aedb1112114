import pytest

from tests.chaos.harness import RECONCILIATION
from tests.support.pipeline import pytest_runtest_makereport

__all__ = ["pytest_runtest_makereport"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per fault-injection case, e.g. `nats-restart: orders 150, published 150, ...`."""
    lines = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == RECONCILIATION
    ]
    if lines:
        terminalreporter.write_sep("=", "fault-injection reconciliation")
        for line in lines:
            terminalreporter.write_line(line)
