"""Real components the tests need: skip without them on a laptop, fail in CI (env CI set)."""

from __future__ import annotations

import os

import pytest


def missing(what: str) -> None:
    """Skip, or fail in CI, because a real component is missing."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (required in CI)")
    pytest.skip(what)
