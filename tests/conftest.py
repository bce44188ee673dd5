"""Shared fixtures. The text encoder is loaded once per test session (it takes a few seconds)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def text_encoder():
    from qtransformer.text import TextEncoder

    return TextEncoder()
