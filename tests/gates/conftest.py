"""The cloud tests' real ``moto_server`` (tests/cloud/conftest.py), for the approval gate
against an S3 storage root."""

from tests.cloud.conftest import moto_server  # noqa: F401  (a fixture, used by name)
