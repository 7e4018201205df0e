"""The surface for users' own Trainer/SFTTrainer scripts: the penalty mixin and `build_penalties`."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from forgetless.errors import ForgetlessError
from forgetless.train.integrations import (
    PenaltyTrainerMixin,
    build_penalties,
    reference_batches,
)
from forgetless.train.trainer import ForgetlessTrainer


class NoLogitsTrainer(Trainer):
    """Like TRL's SFTTrainer (fused LM head): its outputs carry no logits."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        return (loss, {"log_probs": None}) if return_outputs else loss


class NoLogitsWithPenalties(PenaltyTrainerMixin, NoLogitsTrainer):
    pass


def lora_gradients(trainer_class, model, batch, regs, tmp_path):
    trainer = trainer_class(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"),
                            regularizers=regs)
    model.train()
    model.zero_grad()
    trainer.compute_loss(model, dict(batch)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_kl_gets_the_same_gradient_when_the_trainer_returns_no_logits(build_lora, build_batch, tmp_path):
    """The mixin reuses the task logits only from the plain Trainer; otherwise KL runs its own forward."""
    model, batch = build_lora(), build_batch()
    with torch.no_grad():  # move the adapters off zero, so the KL has a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    regs = build_penalties(model, {"kl": {"beta": 10.0}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = lora_gradients(ForgetlessTrainer, model, batch, regs, tmp_path)
        other = lora_gradients(NoLogitsWithPenalties, model, batch, regs, tmp_path)
        task_only = lora_gradients(NoLogitsWithPenalties, model, batch, [], tmp_path)
    for name in plain:  # the plain Trainer's logits come from the scored-position head: float32 sums differ a little
        torch.testing.assert_close(other[name], plain[name], rtol=1e-4, atol=1e-4 * float(plain[name].abs().max()))
    assert any(not torch.allclose(plain[n], task_only[n]) for n in plain)  # the KL term did contribute


def test_ewc_sets_up_on_a_model_prepared_for_gradient_checkpointing(tiny_model_dir):
    """PEFT/TRL add an input-grad hook that torch.func refuses; the Fisher is the same without it."""
    from peft import LoraConfig, get_peft_model

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batches = reference_batches(tok, examples=6, batch_size=3, max_length=48)
    assert len(batches) == 2 and batches[0]["input_ids"].shape[0] == 3
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    plain = dict(build_penalties(model, {"ewc": {"lambda": 1.0}}, batches))["penalty_ewc"].fisher
    model.enable_input_require_grads()
    (name, ewc), = build_penalties(model, {"ewc": {"lambda": 1.0}}, batches)
    assert name == "penalty_ewc" and ewc.fisher.keys() == plain.keys()
    for key, fisher in plain.items():
        torch.testing.assert_close(ewc.fisher[key], fisher)
    assert model.get_base_model()._require_grads_hooks  # put back for the training that follows


def test_unknown_penalty_suggests_the_name():
    with pytest.raises(ForgetlessError, match="ewc"):
        build_penalties(torch.nn.Linear(2, 2), {"ewcc": {}})


@pytest.mark.parametrize("sharding, penalties, refused", [
    ("fsdp2", {"l2sp": {"alpha": 1.0}, "ewc": {"lambda": 1.0}}, None),  # on their shards (test_fsdp.py)
    ("fsdp2", {"kl": {"beta": 1.0, "top_k": 8}}, None),  # precomputed targets: reads outputs only
    ("fsdp2", {"kl": {"beta": 1.0}}, "regularizer 'kl' needs whole weights on each process, but FSDP2 .*top_k > 0"),
    ("fsdp1", {"l2sp": {"alpha": 1.0}}, "regularizer 'l2sp' needs whole weights on each process, but FSDP shards"),
    ("zero3", {"l2sp": {"alpha": 1.0}}, "regularizer 'l2sp' .* but DeepSpeed ZeRO-3 shards them"),
    ("fsdp2", {"monitor": True}, "the forgetting monitor needs whole weights in one process, but FSDP2 shards them"),
])
def test_what_runs_under_sharding(build_lora, build_batch, tmp_path, monkeypatch, sharding, penalties, refused):
    """FSDP1 and ZeRO-3 hide where each shard lies; FSDP2 runs the penalties that can work on shards."""
    from types import SimpleNamespace

    from forgetless.train.monitor import ForgettingMonitor, select_probes

    model = build_lora()
    batches = [build_batch()] if "ewc" in penalties else None
    monitor = [ForgettingMonitor(None, select_probes(mc_items=2, gen_items=0))] if penalties.pop("monitor", 0) else []
    trainer = ForgetlessTrainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"),
                                regularizers=build_penalties(model, penalties, batches), callbacks=monitor)
    state = trainer.accelerator.state  # what accelerate's plugins set
    if sharding == "zero3":
        monkeypatch.setattr(type(state), "deepspeed_plugin", property(lambda _: SimpleNamespace(zero_stage=3)))
    else:
        monkeypatch.setattr(trainer, "is_fsdp_enabled", True, raising=False)
        monkeypatch.setattr(state, "fsdp_plugin", SimpleNamespace(fsdp_version=int(sharding[-1])), raising=False)
    if refused is None:
        trainer._refuse_sharded_weights()
    else:
        with pytest.raises(ForgetlessError, match=refused):
            trainer._refuse_sharded_weights()
