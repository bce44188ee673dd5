"""The on-disk format: LeRobot v3 layout, round trips, atomic flushes, foreign datasets and ``qt datagen``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain.loader import OfflineLoader
from qtransformer.dataset import (
    DATA_PATH,
    DatasetMeta,
    DatasetWriter,
    decode_png,
    encode_png,
    load_episodes,
)
from qtransformer.returns import ReturnConfig
from tests.pretrain import fake_env
from tests.pretrain.synthetic import coded_episode, collect, ids, write_coded

REPO = Path(__file__).resolve().parents[2]


def test_writer_round_trip_and_lerobot_schema(tmp_path: Path) -> None:
    eps = write_coded(tmp_path, [3, 5, 4, 6, 2], episodes_per_file=2, image_size=16)
    info = json.loads((tmp_path / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (5, 20, 1)
    assert info["data_path"] == DATA_PATH
    assert info["features"]["observation.state"] == {
        "dtype": "float32",
        "shape": [3],
        "names": ["s0", "s1", "s2"],
    }
    assert info["features"]["observation.images.main"]["dtype"] == "image"
    assert info["features"]["observation.images.main"]["shape"] == [16, 16, 3]

    files = sorted((tmp_path / "data").glob("chunk-*/file-*.parquet"))
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-000/file-002.parquet",
    ]
    table = pa.concat_tables([pq.read_table(f) for f in files])
    for col in (
        "observation.state",
        "action",
        "next.reward",
        "next.done",
        "episode_index",
        "frame_index",
        "index",
        "task_index",
        "timestamp",
        "observation.images.main",
    ):
        assert col in table.column_names
    assert table.schema.field("observation.images.main").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    assert table.column("index").to_pylist() == list(range(20))  # global, contiguous across files
    done = np.asarray(table.column("next.done").to_pylist())
    assert np.flatnonzero(done).tolist() == [2, 7, 11, 17, 19]  # last frame of each episode

    ep_meta = pq.read_table(tmp_path / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(r["episode_index"], r["length"], r["data/file_index"]) for r in ep_meta] == [
        (0, 3, 0),
        (1, 5, 0),
        (2, 4, 1),
        (3, 6, 1),
        (4, 2, 2),
    ]
    assert ep_meta[1]["dataset_from_index"] == 3 and ep_meta[1]["dataset_to_index"] == 8
    assert {"success", "terminated", "quality", "env", "task_id", "paraphrase_split"} <= set(ep_meta[0])

    stats = json.loads((tmp_path / "meta/stats.json").read_text())
    all_state = np.concatenate([e.state for e in eps])
    np.testing.assert_allclose(stats["observation.state"]["mean"], all_state.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["std"], all_state.std(0), atol=1e-5)
    np.testing.assert_allclose(stats["action"]["max"], np.concatenate([e.action for e in eps]).max(0))

    back = load_episodes(tmp_path)
    assert len(back) == 5
    for a, b in zip(eps, back):
        np.testing.assert_array_equal(a.state, b.state)
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.images["main"], b.images["main"])  # PNG is lossless
        assert (a.instruction, a.terminated, a.quality, a.success) == (
            b.instruction,
            b.terminated,
            b.quality,
            b.success,
        )


def test_tasks_table_reads_like_lerobot(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    write_coded(tmp_path, [2, 2], episodes_per_file=1, instruction="open the drawer")
    tasks = pd.read_parquet(tmp_path / "meta/tasks.parquet")
    assert tasks.loc["open the drawer", "task_index"] == 0


def test_hf_datasets_decodes_our_image_column(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    write_coded(tmp_path, [3], episodes_per_file=1, image_size=16)
    ds = datasets.Dataset.from_parquet(str(tmp_path / "data/chunk-000/file-000.parquet"))
    img = np.asarray(ds[2]["observation.images.main"])
    assert img.shape == (16, 16, 3) and int(img[0, 0, 0]) == 20


def test_png_round_trip() -> None:
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(img)), img)


def test_writer_rejects_mismatched_episodes_and_existing_dataset(tmp_path: Path) -> None:
    w = DatasetWriter(tmp_path, episodes_per_file=1)
    w.add_episode(coded_episode(0, 3))
    bad = coded_episode(1, 3)
    bad.state = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="features"):
        w.add_episode(bad)
    with pytest.raises(ValueError, match="resume=True"):
        DatasetWriter(tmp_path)


_CRASHING_WRITER = """
import os, sys
sys.path.insert(0, {repo!r})
from qtransformer.dataset import DatasetWriter
from tests.pretrain.synthetic import coded_episode
real_replace = os.replace
def dying_replace(src, dst):
    if str(dst).endswith("file-001.parquet") and "/data/" in str(dst):
        os._exit(3)  # killed after writing the temporary file, before it became visible
    real_replace(src, dst)
os.replace = dying_replace
w = DatasetWriter({root!r}, episodes_per_file=2)
for i, T in enumerate([3, 4, 5, 6, 7]):
    w.add_episode(coded_episode(i, T))
w.close()
"""


def test_crash_leaves_no_partial_file_and_resume_finishes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    code = textwrap.dedent(_CRASHING_WRITER.format(repo=str(REPO), root=str(root)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    visible = sorted(p.name for p in (root / "data/chunk-000").glob("*.parquet"))
    assert visible == ["file-000.parquet"]  # the half-done second file stays a hidden temporary
    assert any(p.name.startswith(".file-001.parquet.tmp") for p in (root / "data/chunk-000").iterdir())
    meta = DatasetMeta.load(root)
    assert [e.episode_index for e in meta.episodes] == [0, 1] and meta.total_frames == 7

    with DatasetWriter(root, episodes_per_file=2, resume=True) as w:
        assert w.num_flushed_episodes == 2
        for i, T in enumerate([3, 4, 5, 6, 7]):
            if i >= w.num_flushed_episodes:
                w.add_episode(coded_episode(i, T))
    meta = DatasetMeta.load(root)
    assert meta.total_frames == 25 and len(meta.episodes) == 5
    assert json.loads((root / "meta/stats.json").read_text())["observation.state"]["count"] == [25]
    loader = OfflineLoader(root, 4, returns=ReturnConfig(gamma=0.9, n_step=2), num_epochs=1, drop_last=False)
    assert ids(collect(loader)) == [(e, t) for e, T in enumerate([3, 4, 5, 6, 7]) for t in range(T)]


def _lerobot_like(root: Path, *, with_state: bool = True) -> None:
    """A dataset as LeRobot writes it without our extras: no reward, no success/terminated, pandas tasks."""
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    feats = {
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    if with_state:
        feats["observation.state"] = {"dtype": "float32", "shape": [3], "names": None}
    info = {
        "codebase_version": "v3.0",
        "fps": 30,
        "total_episodes": 2,
        "total_frames": 5,
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_path": DATA_PATH,
        "features": feats,
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    cols = {
        "action": pa.array(
            [[0.1, 0.2]] * 5, pa.list_(pa.float32())
        ),  # variable-size lists, as some tools write
        "episode_index": pa.array([0, 0, 1, 1, 1], pa.int64()),
        "frame_index": pa.array([0, 1, 0, 1, 2], pa.int64()),
        "index": pa.array(range(5), pa.int64()),
        "task_index": pa.array([0] * 5, pa.int64()),
    }
    if with_state:
        cols["observation.state"] = pa.array([[float(i), 0.0, 0.0] for i in range(5)], pa.list_(pa.float32()))
    pq.write_table(pa.table(cols), root / "data/chunk-000/file-000.parquet")
    pq.write_table(
        pa.table({"task_index": [0], "__index_level_0__": ["push the block"]}), root / "meta/tasks.parquet"
    )
    pq.write_table(
        pa.table(
            {
                "episode_index": [0, 1],
                "tasks": [["push the block"]] * 2,
                "length": [2, 3],
                "data/chunk_index": [0, 0],
                "data/file_index": [0, 0],
                "dataset_from_index": [0, 2],
                "dataset_to_index": [2, 5],
            }
        ),
        root / "meta/episodes/chunk-000/file-000.parquet",
    )


def test_foreign_lerobot_dataset_gets_sparse_terminal_reward(tmp_path: Path) -> None:
    _lerobot_like(tmp_path)
    eps = load_episodes(tmp_path)
    assert [e.reward.tolist() for e in eps] == [[0.0, 1.0], [0.0, 0.0, 1.0]]
    assert all(e.terminated and e.instruction == "push the block" and e.quality == "unknown" for e in eps)
    batch = collect(
        OfflineLoader(tmp_path, 8, returns=ReturnConfig(gamma=0.5, n_step=1), num_epochs=1, drop_last=False)
    )
    order = np.argsort(batch["state"][:, 0])
    assert batch["bootstrap"][order].tolist() == [1, 0, 1, 1, 0]
    assert batch["mc_return"][order].tolist() == [0.5, 1.0, 0.25, 0.5, 1.0]


def test_foreign_dataset_without_state_is_refused(tmp_path: Path) -> None:
    _lerobot_like(tmp_path, with_state=False)
    with pytest.raises(ValueError, match=r"observation\.state"):
        DatasetMeta.load(tmp_path)


# ------------------------------------------------------------------------------------------ qt datagen


def _datagen(out: Path, **kw):
    from pretrain.datagen import DatagenArgs, run_datagen

    return run_datagen(DatagenArgs(out=out, preset="tiny", **kw), env_module="tests.pretrain.fake_env")


def test_datagen_tiny_with_fake_env_and_worker_independence(tmp_path: Path) -> None:
    a = _datagen(tmp_path / "a", workers=2, image_size=16)
    b = _datagen(tmp_path / "b", workers=1, image_size=16)
    ma, mb = DatasetMeta.load(a), DatasetMeta.load(b)
    assert len(ma.episodes) == 6 and len(ma.files()) == 3  # 2 episodes per shard/file
    assert not (a / ".shards").exists()
    assert sorted({e.quality for e in ma.episodes}) == ["expert", "failed", "noisy"]
    assert all(e.paraphrase_split == "train" and e.env == "garbage_sort" for e in ma.episodes)
    failed = [e for e in ma.episodes if e.quality == "failed"]
    assert all(not e.success and e.terminated is False for e in failed)  # walked away until the time limit
    for fa, fb in zip(ma.files(), mb.files()):
        assert pq.read_table(fa.path).equals(pq.read_table(fb.path))  # same data whatever the worker count
    assert ma.tasks == mb.tasks
    assert json.loads((a / "meta/stats.json").read_text())["observation.state"]["count"] == [ma.total_frames]


def test_datagen_resumes_after_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _datagen(tmp_path / "ref", workers=1)
    monkeypatch.setitem(fake_env._resets, "count", 0)
    monkeypatch.setenv("QT_FAKE_CRASH_AT", "4")  # dies during the second shard
    with pytest.raises(RuntimeError, match="simulated crash"):
        _datagen(tmp_path / "run", workers=1)
    assert not (tmp_path / "run/meta/info.json").exists()  # nothing final is visible yet
    monkeypatch.delenv("QT_FAKE_CRASH_AT")
    monkeypatch.setitem(fake_env._resets, "count", 0)
    out = _datagen(tmp_path / "run", workers=1)
    assert fake_env._resets["count"] == 4  # the completed first shard (2 episodes) was not redone
    for fr, fo in zip(DatasetMeta.load(reference).files(), DatasetMeta.load(out).files()):
        assert pq.read_table(fr.path).equals(pq.read_table(fo.path))
    with pytest.raises(ValueError, match="different arguments"):
        _datagen(tmp_path / "run", workers=1, seed=1)


def test_datagen_tiny_with_real_envs(tmp_path: Path) -> None:
    envs = pytest.importorskip("envs")
    if not hasattr(envs, "make_env"):
        pytest.skip("envs.make_env does not exist yet")
    from pretrain.datagen import DatagenArgs, run_datagen

    out = run_datagen(DatagenArgs(env="garbage_sort", out=tmp_path / "gs", preset="tiny", workers=2))
    meta = DatasetMeta.load(out)
    assert len(meta.episodes) == 6 and meta.total_frames >= 6
    assert all(e.paraphrase_split == "train" and e.task_id for e in meta.episodes)
    batch = collect(
        OfflineLoader(out, 16, returns=ReturnConfig(gamma=0.98, n_step=3), num_epochs=1, drop_last=False)
    )
    assert np.all(np.abs(batch["action"]) <= 1.0) and batch["state"].shape[1] == meta.state_dim


def test_expert_gain_is_checked() -> None:
    from pretrain.datagen import DatagenArgs

    assert DatagenArgs(env="garbage_sort", expert_gain=0.5).expert_gain == 0.5
    for kw in ({"env": "navigate", "expert_gain": 0.5}, {"env": "garbage_sort", "expert_gain": 0.0}):
        with pytest.raises(ValueError, match="expert_gain"):
            DatagenArgs(**kw)
