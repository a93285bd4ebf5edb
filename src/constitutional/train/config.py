"""The trainers' configs: one per trainer, each a TRL trainer's settings that we expose.

They sit together in this light module (pydantic only) so that the command line can build
its options from them without importing torch; each trainer module uses its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config import StageConfig
from ..evaluation.overtraining import PROBE_FLUENCY_SHIFT


class TrainConfig(StageConfig):
    """What every trainer shares. Each trainer's config sets its own defaults."""

    epochs: float = Field(1.0, gt=0, description="Passes over the data (the paper trains one).")
    max_steps: int = Field(-1, description="Stop after N optimiser steps (-1: the full epochs).")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Examples per optimiser step.")
    max_length: int = Field(512, ge=16, description="Longest example in tokens.")
    lora: bool = Field(False, description="Train LoRA adapters, merged into the saved model.")
    seed: int = Field(0, description="Seeds data order and initialisation.")

    def trainer_args(self, out: Path, device: str | None = None, dtype: str | None = None,
                     **overrides: Any) -> dict[str, Any]:
        from .common import common_args

        return common_args(out, device, dtype, num_train_epochs=self.epochs, max_steps=self.max_steps,
                           learning_rate=self.learning_rate,
                           per_device_train_batch_size=self.batch_size, seed=self.seed,
                           **overrides)


class SFTTrainConfig(TrainConfig):
    """SL-CAI fine-tuning on the revisions (TRL SFTTrainer)."""

    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate.")
    completion_only: bool = Field(True, description="Loss on the assistant's answer only.")


class PMTrainConfig(TrainConfig):
    """The preference model: soft-label Bradley–Terry on AI labels (TRL RewardTrainer)."""

    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    max_length: int = Field(1024, ge=16, description="Longest comparison in tokens; longer ones "
                            "are dropped.")
    mix_ratio: float = Field(0.0, ge=0.0, description="Rows of the mixed-in comparison file "
                             "(--mix) per labelled row.")


class DPOTrainConfig(TrainConfig):
    """DPO from the starting policy on soft AI labels (TRL DPOTrainer)."""

    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the "
                        "reference per unit of preference.")
    min_confidence: float = Field(0.55, ge=0.5, le=1.0, description="Drop pairs whose soft label "
                                  "is closer to 0.5 than this (the feedback model could not tell them apart).")
    label_smoothing: float | Literal["auto"] = Field(0.0, description="cDPO label smoothing in "
                                                     "[0, 0.5), or auto: the kept pairs' mean 1 − p.")
    learning_rate: float = Field(5e-6, gt=0, description="Peak learning rate.")
    max_length: int = Field(768, ge=16, description="Longest prompt + answer in tokens.")


class RLTrainConfig(TrainConfig):
    """RL-CAI with TRL's RLOOTrainer against the preference model (or the judge directly)."""

    reward: Literal["pm", "direct"] = Field("pm", description="pm: the preference model; direct: "
                                            "the feedback model's preference over the reference's "
                                            "own answer (direct RLAIF, Lee et al. 2023).")
    constrained: bool = Field(False, description="Reward minus λ·harm cost, λ by dual ascent.")
    cost_target: float = Field(0.2, ge=0, le=1, description="Harm-cost target for --constrained.")
    lambda_lr: float = Field(0.5, gt=0, description="Dual-ascent step size for λ.")
    beta: float = Field(0.05, gt=0, description="KL penalty to the reference (Lee et al.'s 0.05).")
    num_generations: int = Field(4, ge=2, description="Completions per prompt (RLOO's k).")
    max_completion_length: int = Field(64, ge=1, description="Tokens per completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    max_steps: int = Field(10, ge=1, description="Optimiser steps.")
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Completions per step (a multiple of k).")
    checkpoint_every: int = Field(0, ge=0, description="Keep a checkpoint every N steps (0: none).")
    fluency: bool = Field(True, description="Log each batch's mean per-token negative log-"
                          "likelihood under the starting model (a second copy of it, on the "
                          "hf loop), and the probe's (--probe-every); the probe's warns when "
                          "it moves by --probe-fluency-shift (up: less fluent; down: loops, "
                          "which read as likely).")
    fluency_rise: float | None = Field(None, gt=0, description="Also warn when the mean of the "
                                       "last three batches moves this many nats per token from "
                                       "the first three's, either way (none: log only; a batch "
                                       "asks a few prompts, and which ones moves it by a nat on "
                                       "a healthy run).")
    probe_fluency_shift: float = Field(PROBE_FLUENCY_SHIFT, gt=0, description="Nats per token "
                                       "the probe's answers may move under the starting model "
                                       "from the first probe's before a fluency warning.")
    stop_on_warning: int = Field(0, ge=0, description="Stop after N batches in a row with an "
                                 "over-training warning (0: warn only); the output folder then "
                                 "holds the checkpoint --keep names.")
    keep: Literal["before-warning", "best-gold", "final"] = Field(
        "before-warning", description="When stop_on_warning stops training, what the output "
        "folder holds: before-warning, the last checkpoint saved before the first warning (the "
        "starting policy if there is none); "
        "best-gold, the one of those whose probe scored best on gold; final, the weights of "
        "the step it stopped at. Every checkpoint stays in OUT/checkpoints.")
    rollback_margin: int = Field(0, ge=0, description="With stop_on_warning, name the last "
                                 "checkpoint at least this many steps before the first warning: "
                                 "a collapse can begin a probe or two before the probe sees it.")
    probe_every: int = Field(0, ge=0, description="Every N steps (and before the first) the "
                             "policy answers held-out probe prompts (the last 8 red-team and 8 "
                             "helpful, set aside): their reward (the proxy) against what it stands "
                             "for (refusals where harmful, answers where helpful, no loops); a "
                             "proxy that rises while gold does not is a warning, and so is a "
                             "significant fall of the answers' similarity to their requests "
                             "(0: off). With "
                             "checkpoints, the manifest names the one that scored best on gold.")
    helpful_ratio: float = Field(0.5, ge=0, description="Helpful prompts per red-team prompt in "
                                 "the RL mix (without them models turn evasive: Kundu et al. 2023).")


class PMStage(PMTrainConfig):
    """The pipeline's pm stage: ``cai train pm``'s settings, plus the hold-out for calibration."""

    enabled: bool = Field(True, description="Train the preference model (needed by rl.method = rloo).")
    holdout: float = Field(0.2, ge=0, lt=1, description="Share of labels held out to measure the "
                           "preference model's accuracy and calibration.")

    def training(self) -> PMTrainConfig:
        return PMTrainConfig(**self.model_dump(exclude={"enabled", "holdout"}))


class RLStage(StageConfig):
    """The pipeline's rl stage: DPO on the labels, or RLOO against the preference model."""

    method: Literal["dpo", "rloo", "none"] = Field("dpo", description="dpo: offline, from the "
                                                   "labelled pairs; rloo: RL against the preference "
                                                   "model; none: stop at SL-CAI.")
    dpo: DPOTrainConfig = DPOTrainConfig()
    rloo: RLTrainConfig = RLTrainConfig()
