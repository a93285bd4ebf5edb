"""devices.py: the device and number-format choice for every model role."""

import pytest
import torch

from constitutional import devices
from constitutional.errors import CaiError


def test_auto_picks_bf16_only_where_the_hardware_has_it(monkeypatch):
    monkeypatch.delenv("CAI_DEVICE", raising=False)
    monkeypatch.delenv("CAI_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve() == ("cpu", torch.bfloat16)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve() == ("cpu", torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert devices.resolve() == ("cuda", torch.bfloat16)
    assert devices.resolve("cpu", "float32") == ("cpu", torch.float32)


def test_the_choice_is_a_default_of_new_models_not_the_environment(monkeypatch):
    import os

    from constitutional.backends import ModelConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CAI_DEVICE", raising=False)
    monkeypatch.setenv("CAI_DTYPE", "bfloat16")  # the environment: a user-facing default
    monkeypatch.setattr(devices, "_CHOSEN", {})
    assert ModelConfig().dtype == "bfloat16" and ModelConfig().device == "auto"
    devices.configure("cpu", "float32")  # the command line's choice beats the environment
    assert "CAI_DEVICE" not in os.environ and os.environ["CAI_DTYPE"] == "bfloat16"
    m = ModelConfig(spec="scripted")
    assert (m.device, m.dtype) == ("cpu", "float32")
    assert devices.resolve() == ("cpu", torch.float32)
    assert ModelConfig(dtype="bfloat16").dtype == "bfloat16"  # an argument beats both
    with pytest.raises(CaiError, match="dtype 'float16'"):
        devices.configure(dtype="float16")
    with pytest.raises(CaiError, match="no CUDA GPU"):
        devices.resolve("cuda", "auto")


@pytest.mark.slow
def test_the_backend_loads_and_scores_in_bf16_close_to_float32(smollm2):
    from constitutional.backends import chat
    from constitutional.backends.base import ChoiceRequest, GenerationRequest, Sampling
    from constitutional.backends.hf import HFBackend

    bf16 = HFBackend.from_spec("smollm2", batch_size=16, device="cpu", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16 and smollm2.model.dtype == torch.float32
    req = [ChoiceRequest(messages=chat("Is the sky blue? Answer (A) yes or (B) no."),
                         prefix="The answer is:", options=(" (A)", " (B)"))]
    a, b = smollm2.score(req)[0], bf16.score(req)[0]
    assert all(abs(a[k] - b[k]) < 0.3 for k in a), (a, b)  # measured: mean 0.08, max 0.26
    g = bf16.generate([GenerationRequest(messages=chat("Say hello."),
                                         sampling=Sampling(max_new_tokens=8, temperature=0))])
    assert g[0].tokens[0] > 0 and g[0].texts[0].strip()
