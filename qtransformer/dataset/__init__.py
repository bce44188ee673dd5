"""Offline episodes on disk in the LeRobotDataset v3 layout: the format pretraining and fine-tuning share.

Why this layout: LeRobot users can open our datasets with their tools and we can train on theirs. The
full description (every file, column and rule, including how the last frame of an episode is treated)
lives in ``docs/dataset-format.md``; this package is its only implementation.

    root/
      meta/info.json                               codebase_version "v3.0", fps, features, totals, path templates
      meta/stats.json                              mean/std/min/max/count of state, action and reward
      meta/tasks.parquet                           instruction string -> task_index
      meta/episodes/chunk-000/file-000.parquet     one row per episode (location, length, our extras)
      meta/datagen.json                            ``qt datagen``'s settings (optional)
      data/chunk-XXX/file-YYY.parquet              one row per frame; whole episodes only

By role: ``schema`` (column names, ``Episode``, the Arrow schema), ``writer`` (``DatasetWriter``, atomic
files), ``meta`` (``DatasetMeta`` and what a dataset implies: ``dataset_meta``, ``dataset_env_kwargs``),
``stats`` (``RunningStats``, the model's input standardisation) and ``reader`` (episode filters, one
file's columns, whole episodes). The streaming training loader, ``pretrain.loader.OfflineLoader``, is
built on the reader. Import from this package, not from its files.
"""

from qtransformer.dataset.meta import (
    DATAGEN_ENV_KWARGS,
    DataFile,
    DatasetMeta,
    dataset_env_kwargs,
    dataset_meta,
)
from qtransformer.dataset.reader import (
    EpisodeFilter,
    FileColumns,
    check_cameras,
    load_episodes,
    needed_columns,
    read_file,
    select_episodes,
    table_columns,
    with_final_observation,
)
from qtransformer.dataset.schema import (
    ACTION,
    CODEBASE_VERSION,
    DATA_PATH,
    DONE,
    EPISODE_INDEX,
    EPISODES_PATH,
    FRAME_INDEX,
    IMAGE_PREFIX,
    INDEX,
    INFO_PATH,
    QUALITIES,
    REWARD,
    STATE,
    STATS_PATH,
    TASK_INDEX,
    TASKS_PATH,
    TIMESTAMP,
    UNKNOWN,
    Episode,
    EpisodeInfo,
    camera_key,
    decode_png,
    encode_png,
    vector_to_numpy,
)
from qtransformer.dataset.stats import (
    STATS_KEYS,
    RunningStats,
    apply_input_stats,
    apply_instruction_stats,
    apply_state_stats,
)
from qtransformer.dataset.writer import (
    DatasetWriter,
    atomic_write,
    episodes_table,
    tasks_table,
    write_json,
    write_parquet,
)

__all__ = [
    "ACTION",
    "CODEBASE_VERSION",
    "DATAGEN_ENV_KWARGS",
    "DATA_PATH",
    "DONE",
    "EPISODES_PATH",
    "EPISODE_INDEX",
    "FRAME_INDEX",
    "IMAGE_PREFIX",
    "INDEX",
    "INFO_PATH",
    "QUALITIES",
    "REWARD",
    "STATE",
    "STATS_KEYS",
    "STATS_PATH",
    "TASKS_PATH",
    "TASK_INDEX",
    "TIMESTAMP",
    "UNKNOWN",
    "DataFile",
    "DatasetMeta",
    "DatasetWriter",
    "Episode",
    "EpisodeFilter",
    "EpisodeInfo",
    "FileColumns",
    "RunningStats",
    "apply_input_stats",
    "apply_instruction_stats",
    "apply_state_stats",
    "atomic_write",
    "camera_key",
    "check_cameras",
    "dataset_env_kwargs",
    "dataset_meta",
    "decode_png",
    "encode_png",
    "episodes_table",
    "load_episodes",
    "needed_columns",
    "read_file",
    "select_episodes",
    "table_columns",
    "tasks_table",
    "vector_to_numpy",
    "with_final_observation",
    "write_json",
    "write_parquet",
]
