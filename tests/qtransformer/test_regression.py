import torch
from safetensors.torch import load_file

from qtransformer.model import QTransformer

from .regression import CONFIG, PATH, outputs


def test_outputs_match_the_stored_artifact():
    stored = load_file(str(PATH))
    model = QTransformer(CONFIG).eval()
    model.load_state_dict(
        QTransformer.upgrade_state_dict({k[2:]: v for k, v in stored.items() if k.startswith("w.")})
    )
    x = {k: v for k, v in stored.items() if k.startswith("in.")}
    out = outputs(model, x)
    torch.testing.assert_close(out["out.q"], stored["out.q"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["out.q_decode"], stored["out.q_decode"], atol=1e-5, rtol=1e-5)
    assert torch.equal(out["out.bins"], stored["out.bins"])
