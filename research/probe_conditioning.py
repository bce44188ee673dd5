"""How much does a trained network key later action dimensions on the exact bins of earlier ones?

    python -m research.probe_conditioning --checkpoint runs/exp_pretrain/.../policy --dataset runs/data/garbage_5000

Teacher-forced on the successful episodes' states, each dimension's argmax is compared with the data's
bin, first with the earlier dimensions given the data's bins, then with those bins moved by a uniform
random offset in ``[-j, j]`` (``--jitters``). Greedy decoding conditions on the network's own choices,
which are often a few bins off the data's; a network whose later dimensions change when an earlier bin
moves by one has learnt to read the exact bin, not the action (what ``LossConfig.bin_smoothing``'s
jitter removes). Dimension 0 has nothing before it and stays put. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from qtransformer.dataset import EpisodeFilter, load_episodes
from qtransformer.policy import QTransformerPolicy


def conditioning_probe(
    checkpoint: str, dataset: str, jitters: tuple[int, ...], samples: int, seed: int
) -> dict[str, object]:
    policy = QTransformerPolicy.from_checkpoint(checkpoint)
    eps = load_episodes(dataset, cameras=[], episode_filter=EpisodeFilter(success_only=True))
    if not eps:
        raise ValueError(f"{dataset}: no successful episodes to probe on")
    state = np.concatenate([e.state[: len(e.action)] for e in eps])
    action = np.concatenate([e.action for e in eps])
    text = [e.instruction for e in eps for _ in range(len(e.action))]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(action), min(samples, len(action)), replace=False)
    s = torch.tensor(state[pick])
    data_bins = torch.tensor(policy.bins.discretize(action[pick]))
    emb = policy.encoder.encode([text[i] for i in pick])
    model, K = policy.model, policy.model.cfg.num_bins
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, object] = {"checkpoint": checkpoint, "samples": len(pick)}
    with torch.no_grad():
        for j in (0, *jitters):
            prev = data_bins[:, :-1]
            if j:
                prev = (prev + torch.randint(-j, j + 1, prev.shape, generator=gen)).clamp(0, K - 1)
            chosen = model(s, emb, prev).argmax(-1)
            out[f"exact_jitter{j}"] = (chosen == data_bins).float().mean(0).tolist()
            out[f"within3_jitter{j}"] = ((chosen - data_bins).abs() <= 3).float().mean(0).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--jitters", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(
        json.dumps(
            conditioning_probe(args.checkpoint, args.dataset, tuple(args.jitters), args.samples, args.seed)
        )
    )


if __name__ == "__main__":
    main()
