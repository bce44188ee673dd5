import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import torch

from finetune.store import EpisodeStore, load_snapshot, save_snapshot

from .helpers import make_episode


def test_store_round_trip_and_numbering_continues(tmp_path):
    store = EpisodeStore(tmp_path)
    eps = [make_episode(seed=i, image=i % 2 == 0) for i in range(3)]
    for e in eps:
        store.append(e)
    again = EpisodeStore(tmp_path)
    assert len(again) == 3
    loaded = again.load_all()
    for a, b in zip(eps, loaded):
        np.testing.assert_array_equal(a.state, b.state)
        assert a.instruction == b.instruction and a.terminated == b.terminated
        assert (a.image is None) == (b.image is None)
    assert again.append(make_episode()).name == "ep_00000003.npz"


def test_sigkill_keeps_every_finished_episode(tmp_path):
    """A writer killed mid-stream leaves only whole episodes; a partial temp file is cleaned up."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from finetune.store import EpisodeStore
        from tests.finetune.helpers import make_episode
        store = EpisodeStore({str(tmp_path)!r})
        i = 0
        while True:
            store.append(make_episode(T=50, S=64, seed=i))
            print(i, flush=True)
            i += 1
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    finished = -1
    while finished < 20:
        finished = int(p.stdout.readline())
    p.send_signal(signal.SIGKILL)
    p.wait()
    (tmp_path / ".ep_00099999.npz.tmp-1").write_bytes(b"partial")  # as a kill mid-write would leave
    store = EpisodeStore(tmp_path)
    episodes = store.load_all()
    assert len(episodes) >= finished + 1  # every episode announced as finished is there, whole
    assert not list(tmp_path.glob(".ep_*"))
    for i, ep in enumerate(episodes):
        np.testing.assert_array_equal(ep.state, make_episode(T=50, S=64, seed=i).state)


def test_snapshot_is_atomic(tmp_path):
    path = tmp_path / "learner.pt"
    save_snapshot(path, {"step": 1, "w": torch.ones(3)})
    assert load_snapshot(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["learner.pt"]
