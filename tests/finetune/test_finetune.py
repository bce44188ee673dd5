"""``qt finetune`` for real on the fake reaching world: it learns a held-out instruction, collects
through an actor process, and resumes after SIGKILL without losing a finished episode."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from finetune.aprl import AprlConfig
from finetune.store import EpisodeStore
from finetune.train import FinetuneArgs, run_finetune
from pretrain.datagen import DatagenArgs, run_datagen
from pretrain.train import PretrainArgs, run_pretrain
from qtransformer.config import ModelConfig, OptimConfig

FAKE = "tests.finetune.fake_env"
OPTIM = OptimConfig(lr=3e-4, warmup_steps=0, lr_schedule="constant", tau=0.02)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ft")
    data = run_datagen(
        DatagenArgs(env="navigate", out=root / "data", episodes=100, workers=1, seed=0), env_module=FAKE
    )
    run_pretrain(
        PretrainArgs(
            dataset=str(data),
            out=str(root / "pt"),
            steps=300,
            batch_size=64,
            progress=False,
            model=ModelConfig(d_model=64, n_layers=2, n_heads=4),
            optim=OptimConfig(lr=1e-3, warmup_steps=20),
        )
    )
    return {"root": root, "data": data, "policy": root / "pt" / "policy"}


def _args(pretrained: dict[str, Path], out: Path, **kw) -> FinetuneArgs:
    base = dict(
        env="navigate",
        pretrained=str(pretrained["policy"]),
        prior_data=str(pretrained["data"]),
        out=str(out),
        env_steps=900,
        utd=2.0,
        batch_size=64,
        eval_every=300,
        eval_episodes=10,
        progress=False,
        aprl=AprlConfig(enabled=False),
        optim=OPTIM,
    )
    base.update(kw)
    return FinetuneArgs(**base)


@pytest.mark.slow
def test_finetune_masters_a_heldout_instruction(pretrained, tmp_path):
    s = run_finetune(_args(pretrained, tmp_path / "run"), env_module=FAKE)
    assert s["task"] == "go_middle" and s["prior_episodes"] == 100
    assert s["curve"][0]["env_steps"] == 0  # the zero-shot point
    assert s["final_success_rate"] >= 0.8, s["curve"]
    assert s["final_success_rate"] > s["curve"][0]["success_rate"]  # practice raised it
    assert all(0.0 <= p["q_greedy"] <= 1.0 and 0.0 <= p["return_greedy"] <= 1.0 for p in s["curve"])
    assert s["updates"] == pytest.approx(2.0 * s["env_steps"], abs=2)
    assert len(EpisodeStore(tmp_path / "run" / "episodes")) == s["episodes"]
    assert (tmp_path / "run" / "policy" / "model.safetensors").exists()


@pytest.mark.slow
def test_actor_process_collects_through_the_transport(pretrained, tmp_path):
    s = run_finetune(
        _args(pretrained, tmp_path / "actors", env_steps=120, utd=0.5, eval_episodes=0, actors=1),
        env_module=FAKE,
    )
    assert s["env_steps"] >= 120 and s["updates"] >= 60
    assert len(EpisodeStore(tmp_path / "actors" / "episodes")) == s["episodes"]


@pytest.mark.slow
def test_actors_as_ray_tasks(pretrained, tmp_path):
    """``--actor-launcher ray``: the actors are Ray tasks on a local Ray instance, through the same link."""
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    args = _args(pretrained, out, env_steps=120, utd=0.5, eval_episodes=0, actors=2, actor_launcher="ray")
    s = run_finetune(args, env_module=FAKE)
    assert s["env_steps"] >= 120
    stored = EpisodeStore(out / "episodes").load_all()
    assert stored and all("source" in e.info for e in stored)  # every episode came over the link
    assert sorted(p.name for p in (out / "actors").iterdir() if p.is_dir()) == ["0", "1"]  # 2 tasks ran


@pytest.mark.slow
def test_remote_actors_on_listen_with_one_killed_by_sigkill(pretrained, tmp_path, monkeypatch):
    """``qt finetune --listen`` with no actors of its own; ``qt actor`` processes connect with the token.
    The first is killed with SIGKILL mid-run; a second, started with its spool, takes over; the run
    completes with every episode stored once."""
    import socket
    import threading

    token = "remote-actor-token-0123456789"
    monkeypatch.setenv("QT_LEARNER_TOKEN", token)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "remote"
    result: dict = {}
    args = _args(pretrained, out, env_steps=300, utd=0.5, eval_episodes=0, listen=f"127.0.0.1:{port}")
    learner = threading.Thread(target=lambda: result.update(run_finetune(args, env_module=FAKE)))
    learner.start()
    spool = tmp_path / "spool"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from finetune.remote import ActorArgs, run_actor
        run_actor(ActorArgs(learner="ws://127.0.0.1:{port}", spool={str(spool)!r},
                            env_module={FAKE!r}, connect_timeout=120))
        """
    )
    first = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "episodes").exists() or len(list((out / "episodes").glob("ep_*.npz"))) < 3:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    learner.join(60)
    assert not learner.is_alive() and result["env_steps"] >= 300
    stored = EpisodeStore(out / "episodes").load_all()
    sources = [e.info["source"] for e in stored]
    assert len(set(sources)) == len(sources) == result["episodes"]  # none counted twice
    assert len({session for session, _ in sources}) == 1  # the second actor took over the first's spool
    assert sum(len(e) for e in stored[:-1]) < 300  # practice stopped at the budget, however fast actors are
    # What is left in the spool came after the run's last stored episode: kept for a --resume.
    left = sorted(int(p.stem) for p in spool.glob("*.msgpack"))
    assert all(seq > max(s for _, s in sources) for seq in left)


@pytest.mark.slow
def test_sigkill_then_resume_keeps_every_finished_episode(pretrained, tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from pathlib import Path
        from tests.finetune.test_finetune import _args, FAKE
        from finetune.train import run_finetune
        paths = {{"policy": Path({str(pretrained["policy"])!r}), "data": Path({str(pretrained["data"])!r})}}
        run_finetune(_args(paths, Path({str(out)!r}), env_steps=int(sys.argv[1]), eval_episodes=2,
                     resume="--resume" in sys.argv), env_module=FAKE)
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script, "3000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while len(list((out / "episodes").glob("ep_*.npz"))) < 12 if (out / "episodes").exists() else True:
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = EpisodeStore(out / "episodes").load_all()
    steps_before = sum(len(e) for e in before)
    assert len(before) >= 12 and steps_before < 3000
    res = subprocess.run(
        [sys.executable, "-c", script, str(steps_before + 60), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    after = EpisodeStore(out / "episodes").load_all()
    assert all((a.state == b.state).all() and a.instruction == b.instruction for a, b in zip(after, before))
    assert s["episodes"] == len(after) > len(before)
    assert s["env_steps"] == sum(len(e) for e in after) >= steps_before + 60
    assert s["updates"] >= 2 * steps_before  # the learner's count continued from its snapshot


def test_finetuning_keeps_the_pretrained_return_definition_and_exports_it(pretrained, tmp_path):
    from qtransformer.checkpoint import load_policy_checkpoint
    from qtransformer.returns import ReturnOverrides

    pre = load_policy_checkpoint(pretrained["policy"]).returns
    with pytest.raises(ValueError, match=r"returns.gamma=0.5 differs .* gamma=0.98"):
        run_finetune(_args(pretrained, tmp_path / "bad", returns=ReturnOverrides(gamma=0.5)), env_module=FAKE)
    over = ReturnOverrides(gamma=pre.gamma, n_step=1)  # restating gamma is fine; n_step may change
    s = run_finetune(
        _args(pretrained, tmp_path / "run", returns=over, env_steps=40, eval_episodes=0), env_module=FAKE
    )
    want = dataclasses.replace(pre, n_step=1)
    assert s["returns"] == want.to_dict()
    assert load_policy_checkpoint(tmp_path / "run" / "policy").returns == want


def test_practice_samples_keep_the_conservative_term_only_without_a_support_head():
    from finetune.builder import practice_loss
    from qtransformer.config import LossConfig

    default = FinetuneArgs().loss
    assert not default.behavior_online and default.online_alpha is None
    assert practice_loss(default, support_head=True).online_alpha == 0.0
    assert practice_loss(default, support_head=False).online_alpha is None  # alpha, as offline
    assert practice_loss(LossConfig(online_alpha=0.5), support_head=True).online_alpha == 0.5  # as set


class _RecordingEncoder:
    """Stands in for the text encoder and remembers which instructions the policy was given."""

    dim = 16

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts):
        import torch

        self.seen += list(texts)
        return torch.zeros(len(texts), self.dim)


def _recording_actor():
    from finetune.actor import Actor, ExplorationConfig
    from qtransformer.bins import ActionBins
    from qtransformer.model import QTransformer
    from qtransformer.policy import QTransformerPolicy
    from tests.finetune.fake_env import ReachEnv
    from tests.qtransformer.helpers import tiny_config

    encoder = _RecordingEncoder()
    model = QTransformer(tiny_config(state_dim=2, action_dim=2))
    policy = QTransformerPolicy(model, ActionBins([-1, -1], [1, 1], 8), encoder)
    exploration = ExplorationConfig(epsilon_start=0.0, epsilon_end=0.0)
    return Actor(policy, ReachEnv(), "go_middle", exploration, AprlConfig(enabled=False)), encoder


def test_from_scratch_normalize_state_takes_the_prior_datas_statistics(pretrained, tmp_path):
    import json

    import torch

    from finetune.builder import make_policy

    model = ModelConfig(d_model=32, n_layers=1, n_heads=2, normalize_state=True)
    args = dataclasses.replace(_args(pretrained, tmp_path / "s", model=model), pretrained=None)
    policy, _ = make_policy(args, env_module=FAKE)
    mean = json.loads((pretrained["data"] / "meta/stats.json").read_text())["observation.state"]["mean"]
    assert torch.allclose(policy.model.state_mean, torch.tensor(mean, dtype=torch.float32))
    with pytest.raises(ValueError, match="--prior-data"):
        make_policy(dataclasses.replace(args, prior_data=None), FAKE)
    # The instruction statistics likewise come from the prior data's instructions.
    model = ModelConfig(d_model=32, n_layers=1, n_heads=2, normalize_instruction=True)
    args = dataclasses.replace(args, model=model)
    policy, _ = make_policy(args, env_module=FAKE)
    emb = policy.encoder.encode(["go left", "go right"])
    assert torch.allclose(policy.model.instruction_mean, emb.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="normalize_instruction from scratch"):
        make_policy(dataclasses.replace(args, prior_data=None), FAKE)


def test_reset_free_practice_undoes_a_success_instead_of_calling_a_person():
    import envs
    from finetune.actor import Actor, ExplorationConfig
    from qtransformer.bins import ActionBins
    from qtransformer.model import QTransformer
    from qtransformer.policy import QTransformerPolicy
    from tests.qtransformer.helpers import tiny_config

    env = envs.make_env("navigate", reset_free=True, tasks="all")
    target = envs.tasks.heldout_task_ids("navigate")[0]
    model = QTransformer(tiny_config(state_dim=env.observation_space["state"].shape[0], action_dim=3))
    policy = QTransformerPolicy(model, ActionBins([-1] * 3, [1] * 3, 8), _RecordingEncoder())
    actor = Actor(policy, env, target, ExplorationConfig(epsilon_start=0.0), AprlConfig(enabled=False))
    obs, _ = env.reset(seed=0, options={"task": target})
    assert not actor.needs_undo()
    expert = envs.make_expert(env, seed=0)
    done = False
    while not done:
        obs, _, done, truncated, info = env.step(expert.act(obs))
        done = done or truncated
    assert info["is_success"] and actor.needs_undo()  # at the landmark: the target cannot start again
    ep, stats = actor.collect(env_steps=0)
    # The task graph's undo (drive to another landmark) was practised; nobody had to reset the world.
    assert stats["undo"] and ep.task != target and ep.task.startswith("go_to:")
    assert ep.instruction == env.unwrapped.instruction and not stats["human_reset"]
    assert env.unwrapped.human_resets == 0
    with pytest.raises(ValueError, match="unknown task"):
        env.unwrapped.feasible("go_to:nowhere")


def test_a_human_reset_is_read_from_the_reset_not_the_last_step():
    from tests.finetune.fake_env import ReachEnv

    class RebuiltEveryTime(ReachEnv):
        def reset(self, seed=None, options=None):
            obs, info = super().reset(seed=seed, options=options)
            return obs, {**info, "human_reset_needed": True}

    actor, _ = _recording_actor()
    actor.env = RebuiltEveryTime()
    _, stats = actor.collect(env_steps=0)
    assert stats["human_reset"] and not stats["undo"]


def test_scratch_init_keeps_the_pretrained_shape_and_input_statistics_with_new_weights(tmp_path):
    """``init="scratch"``: the from-scratch baseline at equal architecture, bins and input scaling."""
    import torch

    from finetune.builder import INPUT_STATS, make_policy
    from qtransformer.bins import ActionBins
    from qtransformer.checkpoint import save_policy_checkpoint
    from qtransformer.model import QTransformer
    from qtransformer.returns import ReturnConfig
    from tests.qtransformer.helpers import tiny_config

    cfg = tiny_config(state_dim=2, action_dim=2, text_dim=384, normalize_state=True)
    trained = QTransformer(cfg)
    trained.set_state_stats([0.3, -0.2], [2.0, 0.5])
    bins = ActionBins([-1, -1], [1, 1], cfg.num_bins)
    meta = {"env": "navigate", "env_kwargs": {}}
    save_policy_checkpoint(tmp_path / "p", trained, bins, "default", meta, returns=ReturnConfig(gamma=0.9))
    args = FinetuneArgs(
        env="navigate", pretrained=str(tmp_path / "p"), init="scratch", out=str(tmp_path / "o")
    )
    policy, encoder = make_policy(args, FAKE)
    assert (
        policy.model.cfg == dataclasses.replace(cfg, head_dropout=args.head_dropout) and encoder == "default"
    )
    assert policy.bins.num_bins == bins.num_bins
    new, old = policy.model.state_dict(), trained.state_dict()
    for k in INPUT_STATS:
        assert torch.equal(new[k], old[k]), k
    learnt = [k for k in new if new[k].ndim >= 2 and "film" not in k]  # randomly initialised matrices
    assert learnt and all(not torch.equal(new[k], old[k]) for k in learnt)
    assert policy.meta["returns"]["gamma"] == 0.9  # the return definition it is compared under


def test_value_calibration_compares_the_greedy_value_with_the_discounted_return_earned():
    from finetune.train import value_calibration

    res = {
        "q_first": {"t": [0.9, 0.5, 0.7]},
        "successes": {"t": [True, False, True]},
        "lengths": {"t": [1, 4, 3]},
    }
    got = value_calibration(res, "t", gamma=0.5)
    earned = (1.0 + 0.0 + 0.5**2) / 3  # the success reward comes on the last step
    assert got["return_greedy"] == pytest.approx(earned)
    assert got["q_greedy"] == pytest.approx(0.7)
    assert got["overestimation"] == pytest.approx(0.7 - earned)
    res["q_first"]["t"][1] = None  # an episode whose first action was not greedy: nothing to compare
    assert value_calibration(res, "t", gamma=0.5) == {}
