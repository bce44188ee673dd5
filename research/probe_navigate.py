"""Probes behind the Navigate findings in docs/results.md (sections 2 and 3).

    python -m research.probe_navigate oracle-bc --dataset runs/data/navigate_1500 [--success-only]
    python -m research.probe_navigate q-profile --policy runs/exp_pretrain/navigate_v2/qt/policy
    python -m research.probe_navigate practice-bc --run runs/exp_finetune/navigate_4hz_20k/full
    python -m research.probe_navigate failures --policy runs/exp_pretrain/navigate_4hz_lr1e-3/qt/policy \
        --dataset runs/data/navigate_1500_4hz
    python -m research.probe_navigate practice-q --run runs/protocol/navigate/ft_6000/go_to_red_sphere_s0

``oracle-bc``: how learnable is the task from this data when language is taken out of the question?
An MLP gets the state plus a one-hot of the goal's landmark slot, regresses the logged continuous actions
(MSE), and is evaluated greedily on the training tasks. It bounds what imitation of the data can reach.
With ``--language`` the MLP gets the instruction's sentence embedding instead of the goal slot; with
``--bins K`` it classifies each dimension into K bins (cross-entropy, argmax acts) instead of
regressing.

``q-profile``: where does a trained Q-Transformer put its greedy bins? For a few start states it prints,
per action dimension, the chosen bin, the bin of the scripted expert's action, the Q-values at both, and
the fraction of the dataset's actions that sit in the chosen bin.
``practice-bc``: what does a fine-tuning run's practice hold? An MLP regresses the actions of its
successful practice episodes (optionally only those within the first ``--until-steps``) and is evaluated
greedily on the run's task, from the start states of the run's own evaluation.
``failures``: where does a policy go when it fails a task? For each of fine-tuning's evaluation starts
it plays the greedy policy and reports which landmark the base ended nearest; then, from every failing
start, it acts on ``--tries`` instructions drawn from the dataset (the skills the policy was taught)
while the env rewards the task: how often exploring with another known skill reaches the goal
(``ExplorationConfig.instruction_prob``).
``relearn``: the learner alone, without new practice. It fine-tunes the pretrained policy of a finished
run on that run's stored practice episodes (optionally none: ``--online-fraction 0``) mixed with the prior
data, with fine-tuning's own ``Learner``, and evaluates the greedy policy on the run's evaluation starts
every ``--eval-every`` updates: whether the practice data holds a better Q-function than practice found,
and how the learning settings move the held-out task.
``failures`` also counts the failed episodes that ended stuck (in contact on each of their last 5 steps).
``practice-q``: what a finished fine-tuning run's policy believes of its own practice: the Q-value of the
bins practice took and the best supported Q-value at the first and last 3 steps of its last episodes, for
won and lost episodes apart (a lost episode's last steps earn 0).
``support``: greedy decoding restricted to the bins a behaviour-cloning network of the same data finds
likely (probability at least ``--taus`` times that of its most likely bin; discrete BCQ, Fujimoto et
al. 2019), on the held-out task's evaluation starts and on the training tasks: whether the Q-function
chooses well among the actions the data supports. ``tau`` 0 is the Q-function's own greedy policy.
Without ``--bc`` the policy's own support head is used at each tau.
Each prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from envs import make_env, make_expert
from envs import tasks as T
from pretrain.evaluate import task_ids
from qtransformer.bins import ActionBins, soft_bin_targets
from qtransformer.dataset import DatasetMeta, EpisodeFilter, load_episodes


def _goal_onehot(task_id: str, n: int) -> np.ndarray:
    shape = task_id.split(":", 1)[1].split("_", 1)[1]
    out = np.zeros((n, len(T.LANDMARK_SHAPES)), np.float32)
    out[:, T.LANDMARK_SHAPES.index(shape)] = 1.0
    return out


def _embedding_goal() -> Callable[[str, str, int], np.ndarray]:
    """``goal(task, instruction, n)``: the instruction's sentence embedding as ``n`` rows (cached)."""
    from qtransformer.text import TextEncoder

    encoder, cache = TextEncoder(), {}

    def goal(task: str, instruction: str, n: int) -> np.ndarray:
        if instruction not in cache:
            cache[instruction] = encoder.encode([instruction]).numpy()
        return np.repeat(cache[instruction], n, 0)

    return goal


def oracle_bc(
    dataset: str,
    success_only: bool,
    steps: int,
    episodes: int,
    seed: int,
    language: bool = False,
    bins: int = 0,
) -> dict[str, float]:
    eps = load_episodes(dataset, cameras=[], episode_filter=EpisodeFilter(success_only=success_only))
    if language:  # the instruction's sentence embedding instead of the oracle's goal slot
        goal = _embedding_goal()
    else:

        def goal(task: str, instruction: str, n: int) -> np.ndarray:
            return _goal_onehot(task, n)

    x = np.concatenate(
        [np.concatenate([e.state, goal(e.task_id, e.instruction, len(e.state))], 1) for e in eps]
    )
    act = _fit_mlp(x, np.concatenate([e.action for e in eps]), bins, steps, seed)
    env = make_env("navigate", control_hz=float(DatasetMeta.load(dataset).fps))  # the data's rate
    tids = task_ids("navigate", "train")
    starts = [(3000 + k, tids[k % len(tids)]) for k in range(episodes)]

    def policy(obs: dict) -> np.ndarray:
        g = goal(env.unwrapped.task_id, str(obs["instruction"]), 1)  # cached per instruction
        return act(torch.tensor(np.concatenate([obs["state"][None], g], 1)))

    rate = _success_rate(env, starts, policy)
    return {"transitions": len(x), "success_rate": rate, "episodes": episodes}


def _success_rate(env, starts: list[tuple[int, str]], policy) -> float:
    """Share of the episodes from ``starts`` (seed, task) that ``policy(obs) -> action`` wins; closes ``env``."""
    wins = []
    for seed, task in starts:
        obs, _ = env.reset(seed=seed, options={"task": task})
        done, term = False, False
        while not done:
            obs, _, term, trunc, _ = env.step(policy(obs))
            done = term or trunc
        wins.append(bool(term))
    env.close()
    return float(np.mean(wins))


def _fit_mlp(
    x: np.ndarray, y: np.ndarray, bins: int, steps: int, seed: int, hidden: int = 256, smooth: float = 0.0
):
    """An MLP (two hidden layers of ``hidden``) from inputs ``x`` to actions ``y`` in [-1, 1]: MSE, or
    cross-entropy over ``bins`` per dimension with argmax acting (the target spread over neighbouring bins
    by ``qtransformer.bins.soft_bin_targets`` with std ``smooth`` bins). Returns ``act(x) -> action`` for
    one row."""
    X, Y = torch.tensor(x), torch.tensor(y)
    torch.manual_seed(seed)
    D = Y.shape[1]
    net = nn.Sequential(
        nn.Linear(X.shape[1], hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, D * (bins or 1)),
    )
    action_bins = ActionBins(-np.ones(D), np.ones(D), bins) if bins else None

    def logits(x: torch.Tensor) -> torch.Tensor:  # (N, D, bins): one class per bin, argmax acts
        return net(x).view(len(x), D, -1)

    B = torch.tensor(action_bins.discretize(y)) if action_bins else None
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(X), (256,))
        if B is None:
            loss = (net(X[i]) - Y[i]).pow(2).mean()
        else:
            target = soft_bin_targets(B[i].flatten(), bins, smooth)
            loss = nn.functional.cross_entropy(logits(X[i]).flatten(0, 1), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def act(x: torch.Tensor) -> np.ndarray:
        if action_bins is None:
            return np.clip(net(x)[0].numpy(), -1.0, 1.0)
        return action_bins.undiscretize(logits(x)[0].argmax(-1))

    return act


def practice_bc(run: str, until_steps: int | None, steps: int, episodes: int, seed: int) -> dict[str, object]:
    """Imitate the successful practice episodes of a fine-tuning run (one task, so the state alone) and
    evaluate on that task's fine-tuning evaluation starts: what the practice data holds for imitation."""
    from finetune.store import EpisodeStore
    from finetune.train import EVAL_SEED
    from qtransformer.checkpoint import load_policy_checkpoint

    meta = load_policy_checkpoint(Path(run, "policy")).meta
    stored, used, total = EpisodeStore(Path(run, "episodes")).load_all(), [], 0
    for ep in stored:
        total += len(ep)
        if until_steps is not None and total > until_steps:
            break
        used.append(ep)
    wins_in_data = [e for e in used if e.success]
    if not wins_in_data:
        raise ValueError(f"{run}: no successful practice episode in the first {total} steps")
    x = np.concatenate([e.state[:-1] for e in wins_in_data])
    act = _fit_mlp(x, np.concatenate([e.action for e in wins_in_data]), 0, steps, seed)
    env = make_env("navigate", tasks="all", **meta["env_kwargs"])
    # The starts of the run's own evaluation (finetune.train, through qtransformer.rollout.evaluate).
    starts = [(EVAL_SEED + k, meta["task"]) for k in range(episodes)]
    rate = _success_rate(env, starts, lambda obs: act(torch.tensor(obs["state"][None])))
    return {
        "practice_episodes": len(used),
        "practice_successes": len(wins_in_data),
        "practice_steps": sum(len(e) for e in used),
        "success_rate": rate,
        "episodes": episodes,
    }


def q_profile(policy_dir: str, dataset: str | None, states: int) -> dict[str, object]:
    from qtransformer.policy import QTransformerPolicy

    policy = QTransformerPolicy.from_checkpoint(policy_dir)
    share = None
    if dataset:
        acts = np.concatenate([e.action for e in load_episodes(dataset, cameras=[])])
        share = policy.bins.discretize(acts)  # (N, D) bins of every logged action
    env = make_env("navigate")
    expert = make_expert(env, seed=0)
    tids = task_ids("navigate", "train")
    rows = []
    for i in range(states):
        obs, _ = env.reset(seed=4000 + i, options={"task": tids[i % len(tids)]})
        out = policy.act({"state": obs["state"][None]}, [str(obs["instruction"])], return_q=True)
        e_bins = policy.bins.discretize(expert.act(obs)[None])[0]
        q = out.q_values[0]
        for d in range(q.shape[0]):
            b = int(out.bins[0, d])
            row = {
                "state": i,
                "dim": d,
                "greedy_bin": b,
                "expert_bin": int(e_bins[d]),
                "q_greedy": round(float(q[d, b]), 3),
                "q_expert": round(float(q[d, e_bins[d]]), 3),
            }
            if share is not None:
                row["data_share_of_greedy_bin"] = round(float(np.mean(share[:, d] == b)), 4)
            rows.append(row)
            print(row)
    env.close()
    return {"rows": rows}


def _q_greedy_and_of(policy, obs: dict, action: np.ndarray) -> tuple[float, float]:
    """Q of the greedy action and of ``action`` (teacher-forced through the dimensions) at ``obs``."""
    said = str(obs["instruction"])
    out = policy.act({"state": obs["state"][None]}, [said], return_q=True)
    q_greedy = float(out.q_values[0, -1, out.bins[0, -1]])
    b = policy.bins.discretize(np.asarray(action)[None])[0]
    with torch.no_grad():
        q = policy.model(
            torch.tensor(obs["state"][None]), policy.encoder.encode([said]), torch.tensor(b[None, :-1]).long()
        )
    return q_greedy, float(q[0, -1, b[-1]])


def failures(
    policy_dir: str, dataset: str, task: str, episodes: int, tries: int, seed: int
) -> dict[str, object]:
    from finetune.train import EVAL_SEED
    from qtransformer.policy import QTransformerPolicy

    policy = QTransformerPolicy.from_checkpoint(policy_dir)
    env = make_env("navigate", tasks="all", **policy.meta.get("env_kwargs", {}))
    skills = sorted(set(DatasetMeta.load(dataset).tasks))
    rng = np.random.default_rng(seed)
    expert = make_expert(env, seed=0)
    q_start: list[tuple[float, float]] = []  # (greedy action, expert action) at each start state
    from qtransformer.checkpoint import load_policy_checkpoint

    gamma = load_policy_checkpoint(policy_dir).returns.gamma
    returns: list[float] = []  # the greedy episodes' discounted returns from their start states
    stuck: list[bool] = []  # per failed greedy episode: ended pushing against something
    contact_steps: list[int] = []  # per failed greedy episode: steps in contact

    def play(start: int, instruction: str | None) -> tuple[bool, str]:
        obs, _ = env.reset(seed=EVAL_SEED + start, options={"task": task})
        said = instruction or str(obs["instruction"])
        if instruction is None:
            q_start.append(_q_greedy_and_of(policy, obs, expert.act(obs)))
        done = term = False
        steps = 0
        contact: list[bool] = []
        while not done:
            a = policy.act({"state": obs["state"][None]}, [said]).actions[0]
            obs, _, term, trunc, info = env.step(a)
            done, steps = term or trunc, steps + 1
            contact.append(bool(info["safety_violation"]))
        if instruction is None:
            returns.append(float(term) * gamma ** (steps - 1))
            if not term:
                # Stuck: the base touched something on each of its last 5 steps (pushing into it).
                stuck.append(all(contact[-5:]))
                contact_steps.append(sum(contact))
        u = env.unwrapped
        pos, _ = u.base_pose()
        near = int(np.argmin([np.linalg.norm(u.landmark_pos(i) - pos) for i in range(len(u.lm_body))]))
        return bool(
            term
        ), "goal" if near == u.goal_index else f"{u.colour_of[near]} {T.LANDMARK_SHAPES[near]}"

    greedy = [play(k, None) for k in range(episodes)]
    failed = [k for k, (won, _) in enumerate(greedy) if not won]
    ended: dict[str, int] = {}
    for k in failed:
        ended[greedy[k][1]] = ended.get(greedy[k][1], 0) + 1
    other = {
        k: [play(k, skills[j])[0] for j in rng.choice(len(skills), tries, replace=False)] for k in failed
    }
    env.close()
    return {
        "greedy_success_rate": 1 - len(failed) / episodes,
        "failures": len(failed),
        "failures_ended_nearest": dict(sorted(ended.items(), key=lambda kv: -kv[1])),
        "failures_ended_stuck": int(sum(stuck)),
        "failures_contact_steps_mean": float(np.mean(contact_steps)) if contact_steps else None,
        "other_instruction_success_rate_on_failed_starts": float(
            np.mean([w for v in other.values() for w in v])
        )
        if failed
        else None,
        "failed_starts_reached_by_some_other_instruction": sum(any(v) for v in other.values()),
        # The greedy action's Q at the start states against what the policy achieves from them: a
        # calibrated Q is at most the success rate times the discount over the steps it takes.
        "q_greedy_at_start_mean": float(np.mean([g for g, _ in q_start])),
        "q_expert_action_at_start_mean": float(np.mean([e for _, e in q_start])),
        "greedy_discounted_return_mean": float(np.mean(returns)),
        "episodes": episodes,
        "tries": tries,
    }


def practice_q(run: str, last: int, edge: int = 3, encoder: object | None = None) -> dict[str, object]:
    """The finished run's policy on its own practice: at the first and the last ``edge`` steps of each of
    the ``last`` stored episodes, the Q-value of the bins practice took and the largest Q-value over the
    supported bins, per action dimension, for won and lost episodes apart. A lost episode's last step
    earns 0 (a timeout is a failure), so its values there show how well practice's failures were learnt."""
    from finetune.store import EpisodeStore
    from qtransformer.model import supported
    from qtransformer.policy import QTransformerPolicy

    policy = QTransformerPolicy.from_checkpoint(Path(run) / "policy", encoder=encoder)
    model = policy.model.eval()
    tau = model.cfg.support_tau
    episodes = EpisodeStore(Path(run) / "episodes").load_all()[-last:]
    rows: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        T_ = len(ep.action)
        state, _ = policy._observation_tensors({"state": ep.state[:T_]}, T_)
        emb = policy.encoder.encode([ep.instruction] * T_)
        bins = torch.as_tensor(policy.bins.discretize(ep.action))
        with torch.no_grad():
            q, logits = model(state, emb, bins[:, :-1], return_behavior=True)
        taken = q.gather(-1, bins[..., None]).squeeze(-1)
        best = (
            q.masked_fill(~supported(logits, tau), float("-inf")).max(-1).values
            if tau > 0
            else q.max(-1).values
        )
        for where, sl in (("first", slice(0, edge)), ("last", slice(max(0, T_ - edge), T_))):
            key = f"{'won' if ep.success else 'lost'}_{where}{edge}"
            rows.setdefault(key, []).append(torch.cat([taken[sl], best[sl]], 1).mean(0).numpy())
    out: dict[str, object] = {"run": run, "episodes": len(episodes)}
    for key, v in sorted(rows.items()):
        m = np.mean(v, axis=0)
        D = len(m) // 2
        out[key] = {
            "episodes": len(v),
            "q_taken": [round(float(x), 3) for x in m[:D]],
            "q_best_supported": [round(float(x), 3) for x in m[D:]],
        }
    return out


def _heldout_and_training(
    env_kwargs: dict, act, task: str, episodes: int, train_episodes: int
) -> dict[str, float | None]:
    """Success of ``act(obs) -> action`` on the held-out task's evaluation starts (those of fine-tuning)
    and on ``train_episodes`` episodes cycling through the training tasks."""
    from finetune.train import EVAL_SEED

    train = task_ids("navigate", "train")
    held = [(EVAL_SEED + k, task) for k in range(episodes)]
    seen = [(800_000 + k, train[k % len(train)]) for k in range(train_episodes)]
    return {
        "heldout_task": _success_rate(make_env("navigate", tasks="all", **env_kwargs), held, act),
        "training_tasks": _success_rate(make_env("navigate", tasks="all", **env_kwargs), seen, act)
        if train_episodes
        else None,
    }


def support(
    policy_dir: str, bc_dir: str | None, task: str, taus: list[float], episodes: int, train_episodes: int
) -> dict[str, object]:
    from qtransformer.policy import QTransformerPolicy

    qp = QTransformerPolicy.from_checkpoint(policy_dir)
    if bc_dir is None:  # the policy's own support head (ModelConfig.support_tau), at each tau
        out: dict[str, object] = {"task": task, "episodes": episodes, "own_support_head": True}
        for tau in taus:
            qp.model.cfg.support_tau = tau

            def own(obs: dict) -> np.ndarray:
                return qp.act({"state": obs["state"][None]}, [str(obs["instruction"])]).actions[0]

            out[f"tau_{tau:g}"] = r = _heldout_and_training(
                qp.meta.get("env_kwargs", {}), own, task, episodes, train_episodes
            )
            print(tau, r, flush=True)
        return out
    bc = QTransformerPolicy.from_checkpoint(bc_dir, encoder=qp.encoder)
    D = qp.model.cfg.action_dim

    @torch.inference_mode()
    def act(obs: dict, tau: float) -> np.ndarray:
        state, images = qp._observation_tensors({"state": obs["state"][None]}, 1)
        emb = qp.encoder.encode([str(obs["instruction"])])
        bins = torch.zeros(1, D, dtype=torch.long)
        for i in range(D):
            q = qp.model(state, emb, bins[:, :i], images)[:, -1]
            p = torch.softmax(bc.model(state, emb, bins[:, :i], images)[:, -1].float(), -1)
            bins[:, i] = q.masked_fill(p < tau * p.max(-1, keepdim=True).values, float("-inf")).argmax(-1)
        return qp.bins.undiscretize(bins.numpy())[0]

    out: dict[str, object] = {"task": task, "episodes": episodes, "train_episodes": train_episodes}
    for tau in taus:
        out[f"tau_{tau:g}"] = r = _heldout_and_training(
            qp.meta.get("env_kwargs", {}), lambda o, t=tau: act(o, t), task, episodes, train_episodes
        )
        print(tau, r, flush=True)
    return out


def relearn(
    run: str,
    pretrained: str,
    prior: str,
    updates: int,
    eval_every: int,
    episodes: int,
    lr: float,
    warmup: int,
    online_fraction: float,
    n_step: int | None,
    seed: int,
    save: str | None = None,
    online_alpha: float | None = None,
) -> dict[str, object]:
    import dataclasses

    from finetune.builder import load_prior, make_policy
    from finetune.learner import Learner
    from finetune.replay import EpisodeReplay
    from finetune.store import EpisodeStore
    from finetune.train import EVAL_SEED, FinetuneArgs
    from qtransformer.checkpoint import load_policy_checkpoint
    from qtransformer.config import TrainConfig
    from qtransformer.model import QTransformer
    from qtransformer.returns import ReturnConfig, ReturnOverrides, resolve_returns
    from qtransformer.rollout import evaluate

    task = load_policy_checkpoint(Path(run, "policy")).meta["task"]
    args = FinetuneArgs(env="navigate", task=task, pretrained=pretrained, prior_data=prior, seed=seed)
    args = dataclasses.replace(args, optim=dataclasses.replace(args.optim, lr=lr, warmup_steps=warmup))
    policy, encoder_name = make_policy(args)
    returns = resolve_returns(
        ReturnConfig.from_dict(policy.meta["returns"]),
        ReturnOverrides(n_step=n_step, timeout_is_failure=True),
    )
    loss = dataclasses.replace(args.loss, online_alpha=online_alpha)
    cfg = TrainConfig(model=policy.model.cfg, loss=loss, optim=args.optim, returns=returns)
    model = QTransformer(policy.model.cfg)
    model.load_state_dict(policy.model.state_dict())
    learner = Learner(model, cfg, policy.bins, policy.encoder, seed=seed)
    replays = [EpisodeReplay(returns, 1, seed + i) for i in range(2)]
    for ep in load_prior(args, use_images=False):
        replays[0].add(ep)
    practice = EpisodeStore(Path(run, "episodes")).load_all()
    for ep in practice:
        replays[1].add(ep)
    make = lambda: make_env("navigate", tasks="all", **policy.meta["env_kwargs"])  # noqa: E731
    curve = []
    for u in range(0, updates + 1):
        if u % eval_every == 0:
            policy.model.load_state_dict(learner.weights())
            policy.model.eval()
            rate = evaluate(policy, make, [task], episodes, seed=EVAL_SEED)["success_rate"]
            curve.append((u, rate))
            print({"updates": u, "success_rate": rate}, flush=True)
        if u < updates:
            learner.update(replays[0], replays[1], 128, 1.0 - online_fraction)
    rates = [r for _, r in curve[1:]]
    if save:  # the relearned policy, for the other probes (e.g. ``failures``)
        from qtransformer.checkpoint import save_policy_checkpoint

        meta = {**policy.meta, "task": task, "loss": dataclasses.asdict(loss)}
        model_out = learner.acc.unwrap_model(learner.model)
        save_policy_checkpoint(save, model_out, policy.bins, encoder_name, meta, returns=returns)
    return {
        "practice_episodes": len(practice),
        "practice_successes": sum(e.success for e in practice),
        "curve": curve,
        "mean_after_start": float(np.mean(rates)) if rates else None,
        "lr": lr,
        "warmup": warmup,
        "online_fraction": online_fraction,
        "n_step": returns.n_step,
        "online_alpha": online_alpha,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("oracle-bc")
    o.add_argument("--dataset", required=True)
    o.add_argument("--success-only", action="store_true")
    o.add_argument("--language", action="store_true", help="condition on the instruction, not the goal slot")
    o.add_argument("--bins", type=int, default=0, help="classify into this many bins per dimension (0: MSE)")
    o.add_argument("--steps", type=int, default=4000)
    o.add_argument("--episodes", type=int, default=60)
    o.add_argument("--seed", type=int, default=0)
    pb = sub.add_parser("practice-bc")
    pb.add_argument("--run", required=True, help="a fine-tuning run directory (qt finetune --out)")
    pb.add_argument("--until-steps", type=int, default=None, help="only practice up to this many env steps")
    pb.add_argument("--steps", type=int, default=4000)
    pb.add_argument("--episodes", type=int, default=40)
    pb.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("q-profile")
    q.add_argument("--policy", required=True)
    q.add_argument("--dataset", default=None, help="also report how often the dataset uses each greedy bin")
    q.add_argument("--states", type=int, default=3)
    f = sub.add_parser("failures")
    f.add_argument("--policy", required=True)
    f.add_argument("--dataset", required=True, help="the policy's pretraining data (its instructions)")
    f.add_argument("--task", default="go_to:red_sphere")
    f.add_argument("--episodes", type=int, default=40)
    f.add_argument("--tries", type=int, default=20, help="other instructions tried from each failing start")
    f.add_argument("--seed", type=int, default=0)
    su = sub.add_parser("support")
    su.add_argument(
        "--bc",
        default=None,
        help="a behaviour-cloning policy of the same data (exp_pretrain); "
        "without it, the policy's own support head (ModelConfig.support_tau) at each tau",
    )
    su.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0])
    su.add_argument("--policy", required=True, help="the Q-Transformer policy")
    su.add_argument("--task", default="go_to:red_sphere")
    su.add_argument("--episodes", type=int, default=40, help="evaluation starts of the held-out task")
    su.add_argument("--train-episodes", type=int, default=60, help="episodes on the training tasks")
    pq = sub.add_parser("practice-q")
    pq.add_argument("--run", required=True, help="a finished fine-tuning run directory (qt finetune --out)")
    pq.add_argument("--last", type=int, default=150, help="the run's last this many practice episodes")
    r = sub.add_parser("relearn")
    r.add_argument("--run", required=True, help="a finished fine-tuning run directory (its episodes/)")
    r.add_argument("--pretrained", required=True, help="the policy that run started from")
    r.add_argument("--prior-data", required=True)
    r.add_argument("--updates", type=int, default=4000)
    r.add_argument("--eval-every", type=int, default=1000)
    r.add_argument("--episodes", type=int, default=40)
    r.add_argument("--lr", type=float, default=3e-4)
    r.add_argument("--warmup", type=int, default=0)
    r.add_argument("--online-fraction", type=float, default=0.5, help="share of each batch from the practice")
    r.add_argument("--n-step", type=int, default=None, help="n-step returns (default: the policy's)")
    r.add_argument("--save", default=None, help="write the relearned policy here")
    r.add_argument("--online-alpha", type=float, default=None, help="conservative weight on practice samples")
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "relearn":
        res = relearn(
            args.run,
            args.pretrained,
            args.prior_data,
            args.updates,
            args.eval_every,
            args.episodes,
            args.lr,
            args.warmup,
            args.online_fraction,
            args.n_step,
            args.seed,
            args.save,
            args.online_alpha,
        )
    elif args.cmd == "support":
        res = support(args.policy, args.bc, args.task, args.taus, args.episodes, args.train_episodes)
    elif args.cmd == "practice-q":
        res = practice_q(args.run, args.last)
    elif args.cmd == "failures":
        res = failures(args.policy, args.dataset, args.task, args.episodes, args.tries, args.seed)
    elif args.cmd == "oracle-bc":
        res = oracle_bc(
            args.dataset, args.success_only, args.steps, args.episodes, args.seed, args.language, args.bins
        )
    elif args.cmd == "practice-bc":
        res = practice_bc(args.run, args.until_steps, args.steps, args.episodes, args.seed)
    else:
        res = q_profile(args.policy, args.dataset, args.states)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
