"""Stored-output regression: a tiny network's expected outputs, kept as text.

Weights and inputs are drawn from fixed seeds (weights in sorted parameter-name order, independent of the
model's own initialisation), so only the outputs need storing. Regenerate (only after an intended change
to the model's math) with:
    python -m tests.qtransformer.regression
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from qtransformer.config import ModelConfig
from qtransformer.model import QTransformer

PATH = Path(__file__).parent.parent / "data" / "tiny_qtransformer_outputs.json"
CONFIG = ModelConfig(
    state_dim=5,
    action_dim=3,
    num_bins=16,
    text_dim=16,
    d_model=16,
    n_layers=1,
    n_heads=2,
    image_size=16,
    num_images=2,
    conv_channels=(8, 8),
    conv_blocks=1,
    image_tokens=2,
)


def model() -> QTransformer:
    """The network with seeded weights: N(0, 0.1) everywhere, norm scales around 1 (FiLM is non-trivial)."""
    net = QTransformer(CONFIG).eval()
    g = torch.Generator().manual_seed(7)
    params = dict(net.named_parameters())  # buffers (the state statistics) keep their identity values
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            if p.is_floating_point():
                p.copy_(
                    torch.randn(p.shape, generator=g) * 0.1
                    + (1.0 if p.ndim == 1 and name.endswith(".weight") else 0.0)
                )
    return net


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return {
        "state": torch.randn(4, 5, generator=g),
        "text": torch.randn(4, 16, generator=g),
        "images": torch.randint(0, 256, (4, 2, 16, 16, 3), generator=g, dtype=torch.uint8),
        "prev_bins": torch.randint(0, 16, (4, 2), generator=g),
    }


def outputs(net: QTransformer, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        q = net(x["state"], x["text"], x["prev_bins"], x["images"])
        bins, q_dec = net.decode(x["state"], x["text"], x["images"])
    return {"q": q, "bins": bins, "q_decode": q_dec}


def load() -> dict[str, torch.Tensor]:
    stored = json.loads(PATH.read_text())
    return {
        "q": torch.tensor(stored["q"]),
        "bins": torch.tensor(stored["bins"]),
        "q_decode": torch.tensor(stored["q_decode"]),
    }


if __name__ == "__main__":
    out = outputs(model(), inputs())
    text = {
        k: (v.tolist() if k == "bins" else [[[round(float(z), 8) for z in r] for r in m] for m in v])
        for k, v in out.items()
    }
    PATH.write_text(json.dumps(text) + "\n")
    print(f"wrote {PATH}")
