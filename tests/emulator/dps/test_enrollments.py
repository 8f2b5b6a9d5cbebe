"""Tests for emulator.dps.enrollments: the keys it generates for enrollments that leave them out."""

from __future__ import annotations

import base64

from emulator.dps.enrollments import generate_key


def test_generated_key_is_64_random_bytes() -> None:
    """Generated keys are base64 of 64 bytes, and differ each time."""
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first)) == 64
    assert first != second
