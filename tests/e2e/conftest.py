"""Fixtures the end-to-end tests share with the notifier's tests."""

from tests.integration.notifier.conftest import smtp as smtp
