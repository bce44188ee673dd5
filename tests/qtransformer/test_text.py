import pytest
import torch

from qtransformer.text import TextEncoder, resolve_encoder_path


def test_embeddings_are_normalised_cached_and_batch_independent(text_encoder):
    texts = ["put the green bottle in the recycling bin", "go to the red cone"]
    both = text_encoder.encode(texts)
    assert both.shape == (2, 384)
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(2))
    single = text_encoder._encode_uncached([texts[1]])[0]
    torch.testing.assert_close(both[1], single, atol=1e-5, rtol=1e-5)
    similar = text_encoder.encode(["put the green bottle into the recycling bin"])[0]
    assert similar @ both[0] > similar @ both[1]  # paraphrases land near each other
    assert texts[0] in text_encoder._cache


def test_lru_cache_is_bounded(text_encoder):
    enc = TextEncoder.__new__(TextEncoder)
    enc.__dict__.update(text_encoder.__dict__)
    enc._cache = type(text_encoder._cache)()
    enc.cache_size = 3
    enc.encode([f"instruction {i}" for i in range(5)])
    assert list(enc._cache) == ["instruction 2", "instruction 3", "instruction 4"]


def test_missing_encoder_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="local Hugging Face encoder"):
        resolve_encoder_path(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_encoder_path(tmp_path)


def test_any_local_encoder_directory_loads(tmp_path, text_encoder):
    import shutil

    from qtransformer.text import default_encoder_path

    local = tmp_path / "my-encoder"
    shutil.copytree(default_encoder_path(), local)
    enc = TextEncoder(local)
    torch.testing.assert_close(enc.encode(["hello robot"]), text_encoder.encode(["hello robot"]))
