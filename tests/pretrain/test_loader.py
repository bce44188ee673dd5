"""The streaming loader: TD targets, last-frame rules, rank splits, resume, filters and images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pretrain.loader import OfflineLoader
from qtransformer.batch import REQUIRED_KEYS
from qtransformer.dataset import DatasetMeta, DatasetWriter, EpisodeFilter, load_episodes
from qtransformer.returns import ReturnConfig, episode_targets
from tests.pretrain.synthetic import coded_episode, collect, ids, write_coded

REPO = Path(__file__).resolve().parents[2]


def _by_frame(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.lexsort((batch["state"][:, 1], batch["state"][:, 0]))
    return {k: (np.asarray(v)[order]) for k, v in batch.items()}


def test_targets_match_episode_targets_for_a_terminated_episode(tmp_path: Path) -> None:
    ep = coded_episode(0, 5, terminated=True)
    ep.reward = np.array([0.0, 0.5, 0.0, 0.0, 1.0], np.float32)
    with DatasetWriter(tmp_path, episodes_per_file=1) as w:
        w.add_episode(ep)
    b = _by_frame(
        collect(
            OfflineLoader(
                tmp_path, 2, returns=ReturnConfig(gamma=0.5, n_step=3), num_epochs=1, drop_last=False
            )
        )
    )
    assert set(REQUIRED_KEYS) <= set(b)
    ref = episode_targets(ep.reward, True, 0.5, 3)
    np.testing.assert_array_equal(b["state"][:, 1], np.arange(5))  # all 5 transitions kept
    np.testing.assert_allclose(b["rewards"], ref.rewards)
    np.testing.assert_array_equal(b["nstep"], ref.nstep)
    np.testing.assert_array_equal(b["bootstrap"], ref.bootstrap)
    np.testing.assert_allclose(b["mc_return"], ref.mc_return)
    # hand-computed: windows reaching the terminal step do not bootstrap; mc_return[0] = .5*.5 + .5**4 * 1
    assert b["bootstrap"].tolist() == [1, 1, 0, 0, 0]
    assert b["mc_return"][0] == pytest.approx(0.25 + 0.0625)
    # next observation: t + nstep, with the (unused) terminal one replaced by the last stored frame
    assert b["next_state"][:, 1].tolist() == [3, 4, 4, 4, 4]
    np.testing.assert_allclose(b["action"][:, 0], np.arange(5) / 100)
    assert b["instruction"].tolist() == ["pick up the can"] * 5


def test_timeout_is_failure_keeps_every_frame_and_ends_in_a_terminal(tmp_path: Path) -> None:
    ep = coded_episode(0, 4, terminated=False)
    ep.reward = np.zeros(4, np.float32)
    with DatasetWriter(tmp_path, episodes_per_file=1) as w:
        w.add_episode(ep)
    loader = OfflineLoader(
        tmp_path,
        2,
        returns=ReturnConfig(gamma=0.5, n_step=2, timeout_is_failure=True),
        num_epochs=1,
        drop_last=False,
    )
    b = _by_frame(collect(loader))
    assert b["state"][:, 1].tolist() == [0, 1, 2, 3]  # the last action is a transition into failure
    assert b["bootstrap"].tolist() == [1, 1, 0, 0]  # windows reaching the end do not bootstrap
    np.testing.assert_allclose(b["mc_return"], 0.0)


def test_truncated_episode_drops_its_last_transition(tmp_path: Path) -> None:
    ep = coded_episode(0, 4, terminated=False)
    ep.reward = np.array([0.0, 0.0, 0.5, 0.25], np.float32)
    with DatasetWriter(tmp_path, episodes_per_file=1) as w:
        w.add_episode(ep)
    b = _by_frame(
        collect(
            OfflineLoader(
                tmp_path, 2, returns=ReturnConfig(gamma=0.5, n_step=2), num_epochs=1, drop_last=False
            )
        )
    )
    assert b["state"][:, 1].tolist() == [0, 1, 2]  # no next observation is stored for t = 3
    assert b["bootstrap"].tolist() == [1, 1, 1]  # truncation always bootstraps
    assert b["nstep"].tolist() == [2, 2, 1]
    assert b["next_state"][:, 1].tolist() == [2, 3, 3]
    np.testing.assert_allclose(b["rewards"], [[0, 0], [0, 0.5], [0.5, 0]])
    np.testing.assert_allclose(
        b["mc_return"], [0.5**2 * 0.5 + 0.5**3 * 0.25, 0.5 * 0.5 + 0.25 * 0.25, 0.5 + 0.125]
    )


def test_one_epoch_yields_every_transition_once(tmp_path: Path) -> None:
    lengths = [5, 7, 3, 9, 4, 6, 8]
    write_coded(tmp_path, lengths, episodes_per_file=2)
    loader = OfflineLoader(
        tmp_path,
        4,
        returns=ReturnConfig(gamma=0.9, n_step=2),
        num_epochs=1,
        drop_last=False,
        shuffle_buffer=8,
    )
    assert ids(collect(loader)) == [(e, t) for e, T in enumerate(lengths) for t in range(T)]
    seqs = [
        collect(OfflineLoader(tmp_path, 4, returns=ReturnConfig(gamma=0.9, n_step=2), num_epochs=1, seed=s))[
            "state"
        ]
        for s in (0, 0, 1)
    ]
    np.testing.assert_array_equal(seqs[0], seqs[1])  # same seed, same order
    assert not np.array_equal(seqs[0], seqs[2])


@pytest.mark.parametrize("lengths,epf,world", [([4, 5, 6, 3, 7, 2, 5], 1, 3), ([4, 5, 6, 3, 7], 5, 2)])
def test_ranks_read_disjoint_covering_subsets(
    tmp_path: Path, lengths: list[int], epf: int, world: int
) -> None:
    write_coded(tmp_path, lengths, episodes_per_file=epf)
    seen = [
        ids(
            collect(
                OfflineLoader(
                    tmp_path,
                    2,
                    returns=ReturnConfig(gamma=0.9, n_step=1),
                    rank=r,
                    world_size=world,
                    num_epochs=1,
                    drop_last=False,
                )
            )
        )
        for r in range(world)
    ]
    assert all(seen)  # every rank gets work, also with fewer files (1 here) than ranks
    flat = [x for s in seen for x in s]
    assert len(flat) == len(set(flat))  # disjoint
    assert sorted(flat) == [(e, t) for e, T in enumerate(lengths) for t in range(T)]  # covering


def test_resume_from_state_dict_continues_the_epoch(tmp_path: Path) -> None:
    lengths = [6, 5, 7, 4, 6, 5, 8, 3]
    write_coded(tmp_path, lengths, episodes_per_file=1)  # 8 files

    def make() -> OfflineLoader:
        return OfflineLoader(
            tmp_path,
            4,
            returns=ReturnConfig(gamma=0.9, n_step=2),
            seed=3,
            num_epochs=2,
            shuffle_buffer=4,
            drop_last=False,
        )

    first = make()
    it = iter(first)
    for _ in range(6):
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 0 and 0 < state["cursor"] < 8
    resumed = make()
    resumed.load_state_dict(state)
    rest = ids(collect(resumed))
    epoch0 = first.epoch_files(0)[state["cursor"] :]
    expected = [(e.episode_index, t) for f in epoch0 for e in f.episodes for t in range(e.length)]
    expected += [(e, t) for e, T in enumerate(lengths) for t in range(T)]  # all of epoch 1
    assert rest == sorted(expected)
    with pytest.raises(ValueError, match="seed/rank/world_size"):
        OfflineLoader(tmp_path, 4, returns=ReturnConfig(gamma=0.9, n_step=2), seed=4).load_state_dict(state)


def test_filters_select_episodes(tmp_path: Path) -> None:
    specs = [
        ("expert", True, "pick_can", "pick up the can"),
        ("noisy", True, "pick_can", "grab the can"),
        ("noisy", False, "open_drawer", "open the drawer"),
        ("failed", False, "pick_can", "pick up the can"),
        ("expert", True, "open_drawer", "open the drawer"),
    ]
    with DatasetWriter(tmp_path, episodes_per_file=2) as w:
        for i, (q, ok, task, text) in enumerate(specs):
            w.add_episode(
                coded_episode(i, 4, terminated=ok, quality=q, success=ok, task_id=task, instruction=text)
            )

    def episodes(f: EpisodeFilter) -> set[int]:
        b = collect(
            OfflineLoader(
                tmp_path,
                2,
                returns=ReturnConfig(gamma=0.9, n_step=1),
                num_epochs=1,
                drop_last=False,
                episode_filter=f,
            )
        )
        return {e for e, _ in ids(b)}

    assert episodes(EpisodeFilter(success_only=True)) == {0, 1, 4}
    assert episodes(EpisodeFilter(qualities=["noisy", "failed"])) == {1, 2, 3}
    assert episodes(EpisodeFilter(task_ids=["open_drawer"])) == {2, 4}
    assert episodes(EpisodeFilter(instructions=["pick up the can"], success_only=True)) == {0}
    assert [
        e.episode_index for e in load_episodes(tmp_path, episode_filter=EpisodeFilter(success_only=True))
    ] == [
        0,
        1,
        4,
    ]
    with pytest.raises(ValueError, match="no episode"):
        OfflineLoader(
            tmp_path,
            2,
            returns=ReturnConfig(gamma=0.9, n_step=1),
            episode_filter=EpisodeFilter(task_ids=["fly"]),
        )


def test_images_with_frame_history(tmp_path: Path) -> None:
    write_coded(tmp_path, [5, 4], episodes_per_file=1, image_size=16, terminated=True)
    loader = OfflineLoader(
        tmp_path, 3, returns=ReturnConfig(gamma=0.9, n_step=2), frame_history=3, num_epochs=1, drop_last=False
    )
    b = _by_frame(collect(loader))
    assert b["image"].shape == (9, 3, 16, 16, 3) and b["image"].dtype == np.uint8
    for i in range(9):
        ep, t = int(b["state"][i, 0]), int(b["state"][i, 1])
        T = 5 if ep == 0 else 4
        want = [10 * max(t - lag, 0) + ep for lag in (2, 1, 0)]  # oldest first, first frame repeated
        assert b["image"][i, :, 0, 0, 0].tolist() == want
        nt = min(t + 2, T - 1)
        assert b["next_image"][i, :, 0, 0, 0].tolist() == [10 * max(nt - lag, 0) + ep for lag in (2, 1, 0)]
    with pytest.raises(ValueError, match="not image features"):
        OfflineLoader(tmp_path, 3, returns=ReturnConfig(gamma=0.9, n_step=2), cameras=["wrist"])


def test_infinite_stream_crosses_epochs_with_bounded_buffer(tmp_path: Path) -> None:
    write_coded(tmp_path, [5, 6, 7], episodes_per_file=1)
    loader = OfflineLoader(tmp_path, 4, returns=ReturnConfig(gamma=0.9, n_step=1), shuffle_buffer=6)
    it = iter(loader)
    counts = Counter()
    for _ in range(18):  # 72 transitions = 4 epochs of 18
        counts.update(ids(next(it)))
    assert loader.epoch >= 3
    assert set(counts) == {(e, t) for e, T in enumerate([5, 6, 7]) for t in range(T)}
    assert max(counts.values()) <= 6  # no transition is starved or hugely over-sampled


def test_with_final_observation_follows_the_last_frame_rule() -> None:
    from qtransformer.dataset import with_final_observation

    term = with_final_observation(coded_episode(0, 4, terminated=True, image_size=16))
    assert term["state"][:, 1].tolist() == [0, 1, 2, 3, 3] and len(term["action"]) == 4
    assert term["images"]["main"].shape[0] == 5 and term["reward"].tolist() == [0, 0, 0, 1]
    trunc = with_final_observation(coded_episode(1, 4, terminated=False))
    assert trunc["state"][:, 1].tolist() == [0, 1, 2, 3] and len(trunc["action"]) == 3
    assert trunc["terminated"] is False


def _run_bench(tmp_path: Path, *extra: str) -> dict:
    tiny = ["--transitions", "3000", "--stream", "0", "--runs", "1", "--episodes-per-file", "10"]
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_loader.py",
            *tiny,
            "--batch-size",
            "64",
            "--out",
            str(tmp_path),
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _epoch_transitions(root: Path, batch_size: int) -> int:
    """Transitions of one epoch with drop_last: T per terminated episode, T-1 per truncated one."""
    meta = DatasetMeta.load(root)
    total = sum(e.length if e.terminated else e.length - 1 for e in meta.episodes)
    return total // batch_size * batch_size


def test_bench_loader_streams_one_whole_epoch_at_a_tiny_size(tmp_path: Path) -> None:
    out = _run_bench(tmp_path)
    assert out["backend"] == "pyarrow" and out["transitions_per_s"] > 0
    assert out["transitions"] == _epoch_transitions(tmp_path / "3000", 64)


@pytest.mark.parametrize("backend", ["hf-arrow", "hf-rows"])
def test_bench_loader_hugging_face_backends_make_the_same_transitions(tmp_path: Path, backend: str) -> None:
    # The measurement behind dropping `datasets` (docs/benchmarks.md); runs where the package is installed.
    pytest.importorskip("datasets")
    out = _run_bench(tmp_path, "--backend", backend)
    assert out["transitions"] == _epoch_transitions(tmp_path / "3000", 64)
    assert isinstance(out["hf_rank_split_keeps_episodes_whole"], bool)
    assert out["hf_resume_first_frame_index"] >= 0
