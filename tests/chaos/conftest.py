from tests.support.pipeline import pytest_runtest_makereport

__all__ = ["pytest_runtest_makereport"]
