"""A TRL DPOTrainer whose loss honours a per-example `weight`.

TRL 1.16 has no per-example weights (huggingface/trl#5613): `DPOTrainer._compute_loss` reduces
`per_sequence_loss.mean()` with no hook, the collator drops unknown keys, and the dataloader
prunes columns that are not in the trainer's signature. This module carries `weight` through all
three and computes

    loss = (1/B) Σ_i w_i ℓ_i

with no per-batch renormalisation: an example of weight 0 gives no gradient, weight 2 counts
twice, and all weights 1 reproduce stock DPO exactly (losses and parameters to 1e-6 through
`trainer.train()`, tested for each supported loss type). Any global normalisation (e.g. mean weight
1 over the dataset) is done when the data is built (`dlm.preferences.build`).

Supported: `loss_type` sigmoid / ipo / hinge (any mix with `loss_weights`), reverse-KL, with a
reference model, a PEFT adapter as reference, or precomputed reference log-probs. Other TRL
options raise at construction rather than being silently ignored. Built against trl==1.16.0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer
from trl.trainer import dpo_trainer as _trl_dpo
from trl.trainer.dpo_trainer import DataCollatorForPreference

from dlm.errors import DLMError

SUPPORTED_LOSSES = {"sigmoid", "ipo", "hinge"}


class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator plus a float `weight` tensor (1.0 where an example has none)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        out["weight"] = torch.tensor([float(e.get("weight", 1.0)) for e in examples], dtype=torch.float32)
        return out


class WeightedDPOTrainer(DPOTrainer):
    """DPOTrainer with loss = mean over the batch of weight × per-example DPO loss."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        unsupported = set(self.loss_types) - SUPPORTED_LOSSES
        if unsupported or self.ld_alpha is not None or self.use_weighting or self.f_divergence_type != "reverse_kl":
            raise DLMError(
                f"weighted DPO supports only loss_type {sorted(SUPPORTED_LOSSES)} (each equal to TRL's at weight 1) "
                "with reverse_kl, no ld_alpha and no use_weighting: set loss_type in the recipe to one of them; got "
                f"loss_type={self.loss_types}, ld_alpha={self.ld_alpha}, "
                f"use_weighting={self.use_weighting}, f_divergence_type={self.f_divergence_type}")
        if type(self.data_collator) is DataCollatorForPreference:  # TRL's default: swap in ours, same settings
            c = self.data_collator
            self.data_collator = WeightedPreferenceCollator(
                pad_token_id=c.pad_token_id, max_length=c.max_length, truncation_mode=c.truncation_mode,
                pad_to_multiple_of=c.pad_to_multiple_of)
        if not isinstance(self.data_collator, WeightedPreferenceCollator):
            raise DLMError("WeightedDPOTrainer needs a WeightedPreferenceCollator (or the default collator)")

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if "weight" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "weight"]

    def _sequence_logps(self, model, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Summed completion log-probs of policy and reference for [chosen; rejected] rows."""
        skip = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "weight"}
        model_kwargs = {k: v for k, v in inputs.items() if k not in skip}
        model_kwargs["use_cache"] = False
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        if self.precompute_ref_logps:
            ref_logps = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
        else:
            with torch.no_grad(), _trl_dpo.disable_gradient_checkpointing(self.model,
                                                                         self.args.gradient_checkpointing_kwargs):
                if _trl_dpo.is_peft_model(self.model) and self.ref_model is None:
                    unwrapped = self.accelerator.unwrap_model(self.model)
                    name = "ref" if "ref" in unwrapped.peft_config else None
                    with _trl_dpo.use_adapter(unwrapped, adapter_name=name):
                        ref_out = self.model(**model_kwargs, labels=labels, fused_lm_head=True)
                else:
                    ref_out = self.ref_model(**model_kwargs, labels=labels, fused_lm_head=True)
            ref_logps = ref_out.log_probs[:, -seq_len:].sum(dim=1)
        return logps, ref_logps, {"outputs": outputs, "completion_mask": completion_mask}

    def _per_sequence_loss(self, loss_type: str, chosen_lr: torch.Tensor, rejected_lr: torch.Tensor,
                           completion_mask: torch.Tensor) -> torch.Tensor:
        """Per-example DPO loss of one type, exactly as TRL 1.16's `_compute_loss` computes it."""
        delta = chosen_lr - rejected_lr
        if loss_type == "sigmoid":
            return -F.logsigmoid(self.beta * delta)
        if loss_type == "hinge":
            return torch.relu(1 - self.beta * delta)
        # IPO: TRL divides each log-ratio by its completion's token count before the difference
        # (per-token average); squaring the token-summed difference would be a different loss.
        chosen_mask, rejected_mask = completion_mask.chunk(2, dim=0)
        ipo_delta = chosen_lr / chosen_mask.sum(dim=1).clamp(min=1.0) - rejected_lr / rejected_mask.sum(
            dim=1).clamp(min=1.0)
        return (ipo_delta - 1 / (2 * self.beta)) ** 2

    def _compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool):
        mode = "train" if self.model.training else "eval"
        logps, ref_logps, extra = self._sequence_logps(model, inputs)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        ref_chosen, ref_rejected = ref_logps.chunk(2, dim=0)
        chosen_lr, rejected_lr = chosen_logps - ref_chosen, rejected_logps - ref_rejected
        mask = extra["completion_mask"]
        per_example = sum(w * self._per_sequence_loss(t, chosen_lr, rejected_lr, mask)
                          for t, w in zip(self.loss_types, self.loss_weights, strict=True))
        weight = inputs.get("weight")
        weight = torch.ones_like(per_example) if weight is None else weight.to(per_example)
        loss = (per_example * weight).mean()  # no renormalisation by the batch's weight sum
        self._log_metrics(mode, inputs, chosen_lr, rejected_lr, chosen_logps, rejected_logps, weight)
        if return_outputs:
            return loss, extra["outputs"]
        return loss

    def _log_metrics(self, mode, inputs, chosen_lr, rejected_lr, chosen_logps, rejected_logps, weight) -> None:
        """The reward metrics TRL logs, plus the batch's mean weight."""
        gather = self.accelerator.gather_for_metrics
        chosen_rewards, rejected_rewards = self.beta * chosen_lr.detach(), self.beta * rejected_lr.detach()
        m = self._metrics[mode]
        m["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        m["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        m["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        m["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        m["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        m["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        m["weight/mean"].append(gather(weight.detach()).mean().item())
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
