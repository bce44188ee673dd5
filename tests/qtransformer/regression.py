"""Stored-output regression: a tiny network's weights, inputs and expected outputs in safetensors.

Regenerate (only after an intended change to the model's math) with:
    python -m tests.qtransformer.regression
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from qtransformer.config import ModelConfig
from qtransformer.model import QTransformer

PATH = Path(__file__).parent.parent / "data" / "tiny_qtransformer.safetensors"
CONFIG = ModelConfig(
    state_dim=5,
    action_dim=3,
    num_bins=16,
    text_dim=16,
    d_model=16,
    n_layers=1,
    n_heads=2,
    image_size=16,
    state_film=False,  # the artifact predates the FiLM state encoder: old checkpoints must still load
    num_images=2,
    conv_channels=(8, 8),
    conv_blocks=1,
    image_tokens=2,
)


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return {
        "in.state": torch.randn(4, 5, generator=g),
        "in.text": torch.randn(4, 16, generator=g),
        "in.images": torch.randint(0, 256, (4, 2, 16, 16, 3), generator=g, dtype=torch.uint8),
        "in.prev_bins": torch.randint(0, 16, (4, 2), generator=g),
    }


def outputs(model: QTransformer, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        q = model(x["in.state"], x["in.text"], x["in.prev_bins"], x["in.images"])
        bins, q_dec = model.decode(x["in.state"], x["in.text"], x["in.images"])
    return {"out.q": q, "out.bins": bins, "out.q_decode": q_dec}


if __name__ == "__main__":
    torch.manual_seed(0)
    model = QTransformer(CONFIG).eval()
    with torch.no_grad():  # non-trivial FiLM so the test covers it
        for film in model.images_in.films:
            film.proj.weight.normal_(std=0.1)
    x = inputs()
    tensors = {f"w.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file({**tensors, **x, **outputs(model, x)}, str(PATH))
    print(f"wrote {PATH}")
