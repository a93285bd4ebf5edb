"""Ray fan-out on a local Ray instance: same records as without Ray, in order, resumable
across the two."""

import json

import pytest

from constitutional.backends import ModelConfig, chat, load_backend
from constitutional.backends.base import ChoiceRequest
from constitutional.generate import GenerateConfig, generate
from constitutional.prompts import Prompt

ray = pytest.importorskip("ray", reason="the scale extra (Ray) is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_fan_out_keeps_order_and_matches_one_process(local_ray, tmp_path):
    prompts = [Prompt(id=f"p{i:02d}", messages=chat(f"question {i}")) for i in range(11)]
    sampling = GenerateConfig(max_new_tokens=8, n=2)
    generate(load_backend("scripted"), prompts, tmp_path / "plain", sampling, batch_size=5)
    rb = load_backend("scripted", ray_workers=2)
    assert rb.spec == "scripted" and len(rb.actors) == 2
    # Half the prompts with Ray, then the same run resumed without it, then with it again.
    generate(rb, prompts[:6], tmp_path / "mixed", sampling, batch_size=5)
    generate(ModelConfig(spec="scripted").backend(), prompts[:9], tmp_path / "mixed", sampling, batch_size=5)
    generate(rb, prompts, tmp_path / "mixed", sampling, batch_size=5)
    plain, mixed = _rows(tmp_path / "plain" / "generate.jsonl"), _rows(tmp_path / "mixed" / "generate.jsonl")
    key = lambda r: r["id"]
    assert sorted(plain, key=key) == sorted(mixed, key=key)
    assert len({r["id"] for r in mixed}) == 11
    scores = rb.score([ChoiceRequest(prefix=f"q{i}", options=(" a", " b")) for i in range(5)])
    assert scores == load_backend("scripted").score(
        [ChoiceRequest(prefix=f"q{i}", options=(" a", " b")) for i in range(5)])
    rb.close()


def test_pipeline_config_has_a_ray_section_outside_every_stage_key(tmp_path):
    from constitutional.pipeline import STAGES, Run, load_config, packaged_config

    a = load_config(packaged_config("demo"))
    b = load_config(packaged_config("demo"), ["ray.workers=2"])
    assert b.ray.workers == 2
    ra, rb = Run(a, tmp_path / "a"), Run(b, tmp_path / "b")
    for stage in STAGES:
        ra.fingerprints[stage], rb.fingerprints[stage] = ra.fingerprint(stage), rb.fingerprint(stage)
    assert ra.fingerprints == rb.fingerprints
