"""The server must not pull in anything that trains (STYLE.md: the policy server imports only the policy)."""

from __future__ import annotations

import json
import subprocess
import sys

TRAINING_MODULES = (
    "accelerate",
    "qtransformer.loss",
    "qtransformer.learning",
    "pretrain",
    "finetune",
    "envs",
)


def _loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_server_imports_nothing_that_trains():
    loaded = _loaded_after_import("qtransformer.serving.server")
    assert "qtransformer.policy" in loaded and "websockets" in loaded  # the import really happened
    offending = sorted(m for m in loaded if any(m == t or m.startswith(t + ".") for t in TRAINING_MODULES))
    assert offending == []


def test_client_imports_neither_torch_nor_the_model():
    loaded = _loaded_after_import("qtransformer.serving.client")
    assert "qtransformer.serving.client" in loaded
    assert (
        "torch" not in loaded and "qtransformer.policy" not in loaded and "qtransformer.model" not in loaded
    )
