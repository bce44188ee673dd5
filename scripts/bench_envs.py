"""Simulation speed of the two MuJoCo tasks on one core, with and without the 64x64 camera.

    python scripts/bench_envs.py [--steps 1500] [--camera-steps 600] [--runs 5]

Steps random actions (drawn up front, so only the env is timed), resetting when an episode ends.
Prints {"garbage_sort_steps_per_s", "garbage_sort_camera_steps_per_s", "navigate_steps_per_s",
"navigate_camera_steps_per_s", ...} as its last line: the median over runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

import envs  # noqa: E402
from scripts.bench_common import report  # noqa: E402


def steps_per_s(name: str, image_size: int, steps: int, seed: int) -> float:
    env = envs.make_env(name, image_size=image_size)
    shape = env.action_space.shape
    assert shape is not None, f"{name}'s action space has no shape"  # gymnasium types it Optional
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (steps, *shape)).astype(np.float32)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="steps per state-only run")
    p.add_argument("--camera-steps", type=int, default=600, help="steps per run with the 64x64 camera")
    p.add_argument("--runs", type=int, default=5, help="runs per setting; the median is reported")
    args = p.parse_args()
    if min(args.steps, args.camera_steps, args.runs) < 1:
        raise ValueError("--steps, --camera-steps and --runs must be positive")
    out: dict[str, object] = {}
    names = list(envs.ENV_IDS)
    if importlib.util.find_spec("metaworld") is None:  # an optional extra: its envs are left out
        names = [n for n in names if n not in envs.METAWORLD_ENVS]
        out["skipped"] = {n: "the metaworld extra is not installed" for n in envs.METAWORLD_ENVS}
    for name in names:
        for key, size, n in (
            (f"{name}_steps_per_s", 0, args.steps),
            (f"{name}_camera_steps_per_s", 64, args.camera_steps),
        ):
            rates = [steps_per_s(name, size, n, seed) for seed in range(args.runs)]
            out[key] = round(statistics.median(rates), 1)
            print(f"{key}: {out[key]} (runs: {[round(r) for r in rates]})", flush=True)
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": 1}
    report(out)


if __name__ == "__main__":
    main()
