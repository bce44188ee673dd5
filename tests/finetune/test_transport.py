"""The actor <-> learner link: token auth, msgpack only, acknowledged episodes that survive either side
being killed with SIGKILL, and refused bad messages."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
from websockets.sync.client import connect

from finetune.store import EpisodeStore
from finetune.transport import (
    ActorLink,
    AuthError,
    LearnerLink,
    Spool,
    episode_from_wire,
    episode_to_wire,
)
from qtransformer.serving.protocol import ProtocolError, packb, unpackb

from .helpers import make_episode

TOKEN = "learner-test-token-0123456789"
SPEC = {"state_dim": 3, "action_dim": 2, "image": None}


def _wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _drain(link: LearnerLink, n: int, timeout: float = 30.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += link.poll_episodes(timeout=0.2)
    return got


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_episodes_round_trip_on_the_wire_and_bad_ones_are_named():
    ep = make_episode(T=4, image=True, seed=3)
    back = episode_from_wire(unpackb(packb(episode_to_wire(ep))))
    np.testing.assert_array_equal(back.state, ep.state)
    np.testing.assert_array_equal(back.image, ep.image)
    assert (back.instruction, back.task, back.success, back.terminated) == ("go", "t", True, True)
    good = episode_to_wire(make_episode())
    for change, words in (
        ({"state": good["state"][:, :2]}, "state width 2"),
        ({"reward": good["reward"][:3]}, "inconsistent episode"),
        ({"action": np.full((5, 2), np.nan, np.float32)}, "NaN"),
        ({"instruction": 3}, "'instruction' must be a string"),
        ({"state": "x"}, "'state' must be an array"),
        ({"image": np.zeros((6, 8, 8, 3), np.uint8)}, "episode images"),
    ):
        with pytest.raises(ProtocolError, match=words):
            episode_from_wire({**good, **change}, SPEC)


def test_actor_gets_spec_and_weights_and_every_episode_is_acknowledged(tmp_path):
    learner = LearnerLink(token=TOKEN, spec={**SPEC, "task": "go_middle"})
    learner.publish(1, {"w": torch.ones(4)})
    actor = ActorLink(learner.url, TOKEN, spool=tmp_path / "spool")
    try:
        assert actor.hello["spec"]["task"] == "go_middle"
        version, weights = actor.latest_weights(timeout=10)
        assert version == 1 and weights["w"].dtype == np.float32 and weights["w"].sum() == 4.0
        for i in range(3):
            actor.send_episode(make_episode(seed=100 + i, instruction=f"ep {i}"), {"safety_violations": i})
        got = _drain(learner, 3)
        assert [g.episode.instruction for g in got] == ["ep 0", "ep 1", "ep 2"]
        assert [g.stats for g in got] == [{"safety_violations": i} for i in range(3)]
        np.testing.assert_array_equal(got[1].episode.state, make_episode(seed=101).state)
        assert actor.pending == 3  # nothing is forgotten before the learner has stored it
        assert len(list((tmp_path / "spool").glob("*.msgpack"))) == 3
        for g in got:
            learner.ack(g)
        assert actor.flush(timeout=10) and not list((tmp_path / "spool").glob("*.msgpack"))
        learner.publish(2, {"w": torch.full((4,), 2.0)})
        learner.publish(3, {"w": torch.full((4,), 3.0)})
        _wait(lambda: actor._weights is not None and actor._weights[0] == 3)
        assert actor.latest_weights()[0] == 3  # the newest; older ones are skipped
        learner.stop_actors()
        _wait(lambda: actor.stopped)
    finally:
        actor.close()
        learner.close()


def test_actors_without_the_token_are_refused():
    learner = LearnerLink(token=TOKEN)
    try:
        for token in (None, "wrong-token-0123456789"):
            with pytest.raises(AuthError, match="401"):
                ActorLink(learner.url, token, connect_timeout=10)
        assert learner.num_actors == 0 and learner.refused == 2
        with pytest.raises(ValueError, match="needs a token"):
            LearnerLink(host="0.0.0.0", token=None)
    finally:
        learner.close()


def test_bad_actor_messages_are_refused_and_the_connection_stays(tmp_path):
    learner = LearnerLink(token=TOKEN, spec=SPEC)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with connect(learner.url, additional_headers=headers, compression=None) as ws:
            assert unpackb(ws.recv(timeout=10))["type"] == "hello"
            good = {"type": "episode", "session": "s1", "seq": 0, "episode": episode_to_wire(make_episode())}
            frames = [
                "a text frame",
                pickle.dumps({"type": "episode"}),  # never unpickled: it is not msgpack
                packb({"type": "weights"}),
                packb({**good, "seq": -1}),
                packb({**good, "session": ""}),
                packb({**good, "stats": {"x": [1, 2]}}),
                packb({**good, "episode": {**good["episode"], "state": np.zeros((6, 5), np.float32)}}),
                msgpack.packb(
                    {
                        **good,
                        "episode": {
                            "state": {b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}
                        },
                    }
                ),
            ]
            for frame in frames:
                ws.send(frame)
                reply = unpackb(ws.recv(timeout=10))
                assert reply["type"] == "error", reply
            ws.send(packb(good))  # still usable
            got = _drain(learner, 1)
            assert len(got) == 1 and got[0].session == "s1"
            learner.ack(got[0])
            assert unpackb(ws.recv(timeout=10)) == {"type": "ack", "session": "s1", "seq": 0}
            ws.send(packb(good))  # a resend of a stored episode: acknowledged, not handed out again
            assert unpackb(ws.recv(timeout=10))["type"] == "ack"
            assert learner.poll_episodes(timeout=0.5) == []
        assert learner.refused == len(frames)
    finally:
        learner.close()


ACTOR_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from finetune.transport import ActorLink
from tests.finetune.helpers import make_episode
link = ActorLink({url!r}, {token!r}, spool={spool!r})
for i in range({n}):
    link.send_episode(make_episode(seed=i, instruction=f"ep {{i}}"))
print("sent", flush=True)
time.sleep(600)
"""


def test_an_actor_killed_with_sigkill_loses_nothing_it_finished(tmp_path):
    learner = LearnerLink(token=TOKEN, spec=SPEC)
    spool = tmp_path / "spool"
    script = ACTOR_SCRIPT.format(root=os.getcwd(), url=learner.url, token=TOKEN, spool=str(spool), n=3)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        got = _drain(learner, 3, timeout=60)
        assert [g.episode.instruction for g in got] == ["ep 0", "ep 1", "ep 2"]
        learner.ack(got[0])
        _wait(lambda: len(list(spool.glob("*.msgpack"))) == 2)  # the acked one left the spool
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        for g in got[1:]:
            learner.ack(g)  # stored, but the ack goes to a dead connection
        # The restarted actor, same spool: resends the two, which the learner recognises, and goes on
        # numbering after them.
        again = ActorLink(learner.url, TOKEN, spool=spool)
        try:
            assert again.session == Spool(spool).session
            seq = again.send_episode(make_episode(seed=9, instruction="after restart"))
            assert seq == 3
            fresh = _drain(learner, 1)
            assert [g.episode.instruction for g in fresh] == ["after restart"]
            learner.ack(fresh[0])
            assert again.flush(timeout=10)
            assert learner.poll_episodes(timeout=0.5) == []  # nothing came twice
        finally:
            again.close()
    finally:
        proc.kill()
        learner.close()


LEARNER_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from finetune.store import EpisodeStore
from finetune.transport import LearnerLink
store = EpisodeStore({store!r})
seen = {{e.info["source"] for e in store.load_all() if "source" in e.info}}
link = LearnerLink(port={port}, token={token!r}, spec={spec!r}, seen=seen)
print("ready", flush=True)
while True:
    for got in link.poll_episodes(timeout=0.1):
        got.episode.info["source"] = (got.session, got.seq)
        store.append(got.episode)
        link.ack(got)
"""


def _start_learner(tmp_path: Path, port: int) -> subprocess.Popen:
    script = LEARNER_SCRIPT.format(
        root=os.getcwd(), store=str(tmp_path / "episodes"), port=port, token=TOKEN, spec=SPEC
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_actors_ride_out_a_learner_killed_with_sigkill(tmp_path):
    port = _free_port()
    learner = _start_learner(tmp_path, port)
    actor = ActorLink(f"ws://127.0.0.1:{port}", TOKEN, spool=tmp_path / "spool", backoff_s=0.05)
    try:
        for i in range(3):
            actor.send_episode(make_episode(seed=i, instruction=f"ep {i}"))
        assert actor.flush(timeout=30)
        learner.send_signal(signal.SIGKILL)
        learner.wait(30)
        _wait(lambda: not actor.connected)
        for i in range(3, 5):  # practice goes on while the learner is away
            actor.send_episode(make_episode(seed=i, instruction=f"ep {i}"))
        assert actor.pending == 2
        learner = _start_learner(tmp_path, port)
        assert actor.flush(timeout=60)
        assert actor.reconnects >= 1
        stored = EpisodeStore(tmp_path / "episodes").load_all()
        assert [e.instruction for e in stored] == [f"ep {i}" for i in range(5)]
        assert len({e.info["source"] for e in stored}) == 5
    finally:
        actor.close()
        learner.kill()


def test_episodes_of_another_run_are_moved_aside_not_sent(tmp_path):
    spool = tmp_path / "spool"
    first = LearnerLink(token=TOKEN, spec={**SPEC, "run": "run-a"})
    actor = ActorLink(first.url, TOKEN, spool=spool)
    actor.send_episode(make_episode(seed=1))
    assert len(_drain(first, 1)) == 1  # received, never acknowledged
    actor.close()
    first.close()
    second = LearnerLink(token=TOKEN, spec={**SPEC, "run": "run-b"})
    again = ActorLink(second.url, TOKEN, spool=spool)
    try:
        assert again.pending == 0 and second.poll_episodes(timeout=0.5) == []
        assert [p.name for p in (spool / "orphaned" / "run-a").iterdir()] == ["000000000000.msgpack"]
    finally:
        again.close()
        second.close()
