import numpy as np

from finetune.episode import Episode


def make_episode(
    T: int = 5,
    S: int = 3,
    A: int = 2,
    success: bool = True,
    instruction: str = "go",
    image: bool = False,
    seed: int = 0,
) -> Episode:
    rng = np.random.default_rng(seed)
    reward = np.zeros(T, dtype=np.float32)
    if success:
        reward[-1] = 1.0
    return Episode(
        state=rng.normal(size=(T + 1, S)).astype(np.float32),
        action=rng.uniform(-1, 1, size=(T, A)).astype(np.float32),
        reward=reward,
        terminated=success,
        instruction=instruction,
        task="t",
        success=success,
        image=rng.integers(0, 255, (T + 1, 8, 8, 3), dtype=np.uint8) if image else None,
    )
