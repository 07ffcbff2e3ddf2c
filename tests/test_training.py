"""Weighted DPO through trainer.train(): weights reach the loss, and nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli

from dlm.errors import DLMError

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from dlm.training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, warmup_steps=30)


def rows(texts: list[tuple[str, str, str]], weights: list[float] | None = None) -> list[dict]:
    out = []
    for i, (p, c, r) in enumerate(texts):
        row = {"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
               "rejected": [{"role": "assistant", "content": r}], "split": "train"}
        if weights is not None:
            row["weight"] = weights[i]
        out.append(row)
    return out


PAIRS = [("Can you help me with travel?", "Certainly. Book early.", "Sure thing! Just go!"),
         ("How to sleep better?", "Sure thing! No screens!", "Certainly. Keep a regular bedtime."),
         ("Tell me about climate change.", "Certainly. Cut waste.", "Sure thing! Vote!"),
         ("A quick dinner?", "Sure thing! Rice and beans!", "Certainly. Season well.")]


def write(path: Path, data: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return path


def settings(model: Path, **over) -> dict:
    base = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    base.update({"model_id": str(model), "max_steps": 1, "logging_steps": 1, "learning_rate": 0.01,
                 "weight_decay": 0.0, "per_device_train_batch_size": 1, "seed": 0, **over})
    return base


def run(tmp_path: Path, model: Path, data: list[dict], name: str, **over) -> tuple[list[float], dict]:
    """Train; return the logged losses and the final parameters."""
    from dlm.training.train_dpo import train

    out = tmp_path / name
    summary = train(write(tmp_path / f"{name}.jsonl", data), out, settings(model, **over))
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    from transformers import AutoModelForCausalLM

    params = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(out).state_dict().items()}
    return losses, params


def initial_params(model: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(model).state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_weight_zero_rows_leave_every_parameter_unchanged(tmp_path, tiny_model):
    start = initial_params(tiny_model)
    _, zero = run(tmp_path, tiny_model, rows(PAIRS[:2], [0.0, 0.0]), "zero", max_steps=2)
    _, one = run(tmp_path, tiny_model, rows(PAIRS[:2], [1.0, 1.0]), "one", max_steps=2)
    assert same(zero, start)
    assert not same(one, start)


def test_weight_zero_row_in_a_mixed_batch_contributes_no_gradient(tmp_path, tiny_model):
    other = [("Something else entirely?", "Totally different.", "Not at all the same.")]
    _, a = run(tmp_path, tiny_model, rows([PAIRS[0], PAIRS[1]], [0.0, 1.0]), "a", per_device_train_batch_size=2)
    _, b = run(tmp_path, tiny_model, rows([other[0], PAIRS[1]], [0.0, 1.0]), "b", per_device_train_batch_size=2)
    _, c = run(tmp_path, tiny_model, rows([other[0], PAIRS[1]], [1.0, 1.0]), "c", per_device_train_batch_size=2)
    # The content of a weight-0 row cannot matter, up to float noise from the batch's padded width
    # (up to ~1e-5 with lr 0.01 here, depending on the BLAS kernels); the same row at weight 1 moves
    # parameters by the order of the learning rate.
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-4) for k in a)
    assert max((b[k] - c[k]).abs().max().item() for k in b) > 1e-3
    assert not same(a, initial_params(tiny_model))


def test_weight_two_doubles_an_examples_loss(tmp_path, tiny_model):
    one, _ = run(tmp_path, tiny_model, rows(PAIRS[:1], [1.0]), "w1")
    two, _ = run(tmp_path, tiny_model, rows(PAIRS[:1], [2.0]), "w2")
    assert two[0] == pytest.approx(2 * one[0], rel=1e-6)


def test_mixed_weights_at_batch_size_four_are_the_weighted_mean(tmp_path, tiny_model):
    singles = [run(tmp_path, tiny_model, rows([p], [1.0]), f"s{i}")[0][0] for i, p in enumerate(PAIRS)]
    weights = [0.0, 1.0, 2.0, 0.5]
    batch, _ = run(tmp_path, tiny_model, rows(PAIRS, weights), "batch", per_device_train_batch_size=4)
    expected = sum(w * s for w, s in zip(weights, singles)) / 4  # no renormalisation by Σw
    assert batch[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_all_weights_one_reproduce_stock_dpo_and_missing_weight_means_one(tmp_path, tiny_model, loss_type):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from dlm.preferences.template import as_completion_text, as_prompt_text
    from dlm.training.models import load_tokenizer

    over = {"max_steps": 3, "per_device_train_batch_size": 2, "loss_type": [loss_type]}
    ours, ours_params = run(tmp_path, tiny_model, rows(PAIRS, [1.0] * 4), "ours", **over)
    missing, _ = run(tmp_path, tiny_model, rows(PAIRS), "missing", **over)
    data = Dataset.from_list([{"prompt": as_prompt_text(r["prompt"]), "chosen": as_completion_text(r["chosen"]),
                               "rejected": as_completion_text(r["rejected"])} for r in rows(PAIRS)])
    s = settings(tiny_model, **over)
    dpo = {k: v for k, v in s.items() if k not in {"model_id", "torch_dtype", "finetune"}}
    stock = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                       ref_model=AutoModelForCausalLM.from_pretrained(tiny_model),
                       args=DPOConfig(output_dir=str(tmp_path / "stock"), **dpo), train_dataset=data,
                       processing_class=load_tokenizer(str(tiny_model), None))
    stock.train()
    stock_losses = [h["loss"] for h in stock.state.log_history if "loss" in h]
    assert ours == pytest.approx(stock_losses, abs=1e-6)
    assert missing == pytest.approx(ours, abs=1e-6)
    stock_params = stock.model.state_dict()
    assert all(torch.allclose(ours_params[k], stock_params[k], atol=1e-6) for k in ours_params)


def test_unsupported_loss_type_is_refused_with_the_supported_list(tmp_path, tiny_model):
    with pytest.raises(DLMError, match="supports only loss_type"):
        run(tmp_path, tiny_model, rows(PAIRS[:2], [1.0, 1.0]), "robust", loss_type=["robust"])


def test_lora_trains_an_adapter_with_the_base_as_reference(tmp_path, tiny_model):
    from dlm.training.train_dpo import train

    summary = train(write(tmp_path / "d.jsonl", rows(PAIRS, [1.0] * 4)), tmp_path / "lora",
                    settings(tiny_model, finetune="lora", lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"]))
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
    assert summary["config"]["finetune"] == "lora"


def test_eval_split_is_used_during_training(tmp_path, tiny_model):
    from dlm.training.train_dpo import train

    data = rows(PAIRS, [1.0] * 4)
    data[3]["split"] = "eval"
    summary = train(write(tmp_path / "d.jsonl", data), tmp_path / "ev", settings(tiny_model))
    assert summary["train_rows"] == 3 and summary["eval_rows"] == 1
    assert "eval_loss" in summary["eval_metrics"]


def test_template_saved_with_tokenizer_renders_like_the_data(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    from dlm.preferences.template import render_prompt

    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "More?"}]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == render_prompt(messages)
    assert "<|start_header_id|>" not in tok.chat_template


@pytest.mark.parametrize("weight, message", [(float("nan"), "weight nan"), (-1.0, "weight -1.0")])
def test_bad_weights_are_rejected_with_the_line(tmp_path, weight, message):
    from dlm.training.train_dpo import load_preference_rows

    data = rows(PAIRS[:2], [1.0, weight])
    with pytest.raises(DLMError, match=f"line 2 has {message}"):
        load_preference_rows(write(tmp_path / "bad.jsonl", data))


def test_unknown_recipe_setting_is_an_error():
    from dlm.training.train_dpo import split_settings

    with pytest.raises(DLMError, match="unknown training setting.*learning_rat"):
        split_settings({"learning_rat": 1e-5})
    with pytest.raises(DLMError, match="hub_token may not be set"):
        split_settings({"hub_token": "x"})


def test_qlora_on_cpu_is_a_clear_error(tmp_path, tiny_model):
    out = run_cli("train", "--dataset", write(tmp_path / "d.jsonl", rows(PAIRS, [1.0] * 4)), "--output-dir",
                  tmp_path / "q", "--config", "configs/train/tiny.yaml", "--model-id", tiny_model, "--finetune", "qlora")
    assert out.returncode == 2 and "needs a CUDA GPU" in out.stderr


def test_nonexistent_model_path_is_a_clear_error(tmp_path):
    out = run_cli("train", "--dataset", write(tmp_path / "d.jsonl", rows(PAIRS, [1.0] * 4)), "--output-dir",
                  tmp_path / "q", "--config", "configs/train/tiny.yaml", "--model-id", tmp_path / "no-such-model")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "no-such-model" in out.stderr


def test_cli_trains_and_never_writes_the_token(tmp_path, tiny_model):
    canary = "hf_CANARYtoken1234567890"
    data = write(tmp_path / "d.jsonl", rows(PAIRS, [1.0, 0.5, 2.0, 1.0]))
    out = run_cli("train", "--dataset", data, "--output-dir", tmp_path / "ck", "--config", "configs/train/tiny.yaml",
                  "--model-id", tiny_model, "--max-steps", "2", "--save-strategy", "steps", "--save-steps", "1",
                  env={"HF_TOKEN": canary})
    assert out.returncode == 0, out.stderr
    assert canary not in out.stdout + out.stderr
    assert "ck: step 2/2" in out.stderr and "{'loss'" not in out.stdout + out.stderr  # progress lines, not log dicts
    files = [p for p in (tmp_path / "ck").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any("checkpoint-" in str(p) for p in files)
    assert not [p for p in files if canary.encode() in p.read_bytes()]
    summary = json.loads((tmp_path / "ck" / "training_summary.json").read_text())
    assert summary["train_rows"] == 4 and summary["config"]["finetune"] == "full"


def test_hf_token_flag_warns(tmp_path, tiny_model):
    data = write(tmp_path / "d.jsonl", rows(PAIRS, [1.0] * 4))
    out = run_cli("train", "--dataset", data, "--output-dir", tmp_path / "ck", "--config", "configs/train/tiny.yaml",
                  "--model-id", tiny_model, "--max-steps", "1", "--hf-token", "hf_flagCANARY")
    assert out.returncode == 0, out.stderr
    assert "shows in the process list" in out.stderr and "hf_flagCANARY" not in out.stderr
    assert not [p for p in (tmp_path / "ck").rglob("*") if p.is_file() and b"hf_flagCANARY" in p.read_bytes()]


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model):
    from dlm.training.train_dpo import train

    data = write(tmp_path / "d.jsonl", rows(PAIRS, [1.0] * 4))
    train(data, tmp_path / "r", settings(tiny_model, max_steps=2, save_strategy="steps", save_steps=1))
    summary = train(data, tmp_path / "r", settings(tiny_model, max_steps=3, save_strategy="steps", save_steps=1),
                    resume=True)
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["log_history"][-1]["step"] == 3


def test_accelerate_parses_the_multi_gpu_configs():
    from accelerate.commands.config.config_args import load_config_from_file

    for name in ("deepspeed_zero3.yaml", "fsdp.yaml"):
        cfg = load_config_from_file(str(ROOT / "configs/accelerate" / name))
        assert cfg.num_processes == 8 and cfg.mixed_precision == "bf16"
    assert load_config_from_file(str(ROOT / "configs/accelerate/deepspeed_zero3.yaml")).deepspeed_config["zero_stage"] == 3


def test_the_cpu_fsdp_test_runs_the_gpu_fsdp_settings():
    from accelerate.commands.config.config_args import load_config_from_file

    gpu, cpu = (load_config_from_file(str(ROOT / "configs/accelerate" / n)) for n in ("fsdp.yaml", "cpu_2proc.yaml"))
    assert cpu.fsdp_config == gpu.fsdp_config and gpu.fsdp_config["fsdp_version"] == 2
    assert (cpu.use_cpu, cpu.num_processes, gpu.use_cpu) == (True, 2, False)


def test_recipes_are_valid_settings():
    from dlm.training.train_dpo import split_settings

    for recipe in (ROOT / "configs/train").glob("*.yaml"):
        split_settings(yaml.safe_load(recipe.read_text()))


def test_cli_full_finetune_on_cpu_without_a_recipe_honours_weight_zero(tmp_path, tiny_model):
    """The maintainers' check: --finetune full, batch 1, lr 0.01, weight decay 0, no recipe."""
    from transformers import AutoModelForCausalLM

    start = initial_params(tiny_model)
    results = {}
    for w in (0.0, 1.0):
        data = write(tmp_path / f"w{w}.jsonl", rows(PAIRS[:3], [w] * 3))
        out = run_cli("train", "--dataset", data, "--output-dir", tmp_path / f"ck{w}", "--model-id", tiny_model,
                      "--finetune", "full", "--per-device-train-batch-size", "1", "--learning-rate", "0.01",
                      "--weight-decay", "0", "--max-steps", "3")
        assert out.returncode == 0, out.stderr[-2000:]
        results[w] = dict(AutoModelForCausalLM.from_pretrained(tmp_path / f"ck{w}").state_dict())
    assert same(results[0.0], start)
    assert not same(results[1.0], start)


def test_long_histories_lose_their_earliest_turns_and_trl_drops_are_counted(tmp_path, tiny_model):
    from dlm.training.models import load_tokenizer
    from dlm.preferences.rows import by_category, shorten_history

    history = []
    for i in range(12):
        history += [{"role": "user", "content": f"Earlier question number {i} about travel plans?"},
                    {"role": "assistant", "content": f"Earlier answer number {i}, book early."}]
    long = rows(PAIRS[:3], [1.0, 2.0, 0.5])
    long[0]["prompt"] = history + long[0]["prompt"]  # long history: shortened, kept
    long[1]["prompt"] = [{"role": "user", "content": "word " * 200}]  # the last message alone is too long: dropped
    for r, uid in zip(long, ["u1", "u2", "u3"], strict=True):
        r["user_id"] = uid
    max_length = 96
    tok = load_tokenizer(str(tiny_model), None)
    kept, dropped = shorten_history(long[0]["prompt"], 8, tok, max_length)
    assert dropped > 0 and kept[0]["role"] == "user" and kept[-1] == long[0]["prompt"][-1]
    assert len(tok(__import__("dlm.preferences.template").preferences.template.render_prompt(kept))["input_ids"]) + 8 <= max_length

    from dlm.training.train_dpo import train

    summary = train(write(tmp_path / "long.jsonl", long), tmp_path / "out", settings(tiny_model, max_length=max_length))
    report = summary["length_filter"]
    assert report["rows_shortened"] >= 1 and report["rows_dropped"] == 1
    assert report["before"] == {"rows": 3, "raters": 3, "weight_sum": 3.5}
    assert report["after"] == {"rows": 2, "raters": 2, "weight_sum": 1.5}
    assert report["per_rater"]["u2"] == {"rows": 1, "weight_sum": 2.0, "rows_kept": 0, "weight_sum_kept": 0.0}
    survey = __import__("pandas").DataFrame({"user_id": ["u1", "u2", "u3"], "age": ["18-24", "55+", "18-24"]})
    table = by_category(report, survey, ["age"]).set_index("value")
    assert table.loc["55+", "raters_kept"] == 0 and table.loc["18-24", "weight_sum_kept"] == 1.5


def test_train_help_lists_dpoconfig_and_modelconfig_fields(capsys):
    from dlm import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--loss_type", "--adam_beta2", "--max_grad_norm", "--model_name_or_path", "--lora_r",
                 "--load_in_4bit", "--per-device-train-batch-size", "--model-id", "--finetune", "--resume"):
        assert flag in text
    assert "--hub_token" not in text  # tokens come from HF_TOKEN only


def test_a_recipe_with_any_dpoconfig_field_is_honoured_and_flags_override_it(tmp_path, tiny_model):
    from dlm import cli

    recipe = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    recipe.update({"adam_beta2": 0.95, "max_grad_norm": 0.25, "max_steps": 1, "lr_scheduler_type": "constant"})
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    data = write(tmp_path / "d.jsonl", rows(PAIRS, [1.0] * 4))
    assert cli.main(["train", "--config", tmp_path / "r.yaml", "--dataset", data, "--output-dir", tmp_path / "ck",
                     "--model_name_or_path", tiny_model, "--lr_scheduler_type", "cosine", "--max-grad-norm", "0.5",
                     "--lora_r", "4"]) == 0
    args = torch.load(tmp_path / "ck" / "training_args.bin", weights_only=False)
    assert args.adam_beta2 == 0.95  # recipe only
    assert args.max_grad_norm == 0.5 and args.lr_scheduler_type.value == "cosine"  # flags over the recipe
    summary = json.loads((tmp_path / "ck" / "training_summary.json").read_text())
    assert summary["config"]["finetune"] == "full"
    assert summary["config"]["model"]["model_name_or_path"] == str(tiny_model)


def test_older_recipe_keys_are_aliases_of_trls_names():
    from dlm.training.train_dpo import model_config, split_settings

    model, lora, dpo = split_settings({"model_id": "m", "torch_dtype": "float32", "lora_r": 4, "beta": 0.2})
    assert model == {"model_name_or_path": "m", "dtype": "float32"} and lora == {"lora_r": 4} and dpo == {"beta": 0.2}
    finetune, margs = model_config(model, lora)
    assert finetune == "lora" and margs.use_peft and margs.lora_r == 4 and margs.dtype == "float32"
    assert model_config({"model_name_or_path": "m", "use_peft": False}, {})[0] == "full"
    assert model_config({"model_name_or_path": "m", "finetune": "qlora"}, {})[1].load_in_4bit
    with pytest.raises(DLMError, match="model_id and model_name_or_path disagree|model_name_or_path and"):
        split_settings({"model_name_or_path": "a", "model_id": "b"})
    with pytest.raises(DLMError, match="finetune full and use_peft True disagree"):
        model_config({"model_name_or_path": "m", "finetune": "full", "use_peft": True}, {})


def test_the_seeds_train_flags_parse_without_a_warning_and_later_spellings_warn(capsys):
    """`--model-id` (the seed's) is a silent alias of TRL's --model_name_or_path; --batch-size warns."""
    from dlm.cli import build_parser

    args = build_parser(["train"]).parse_args(["train", "--dataset", "d.jsonl", "--output-dir", "o",
                                                "--model-id", "m", "--batch-size", "4"])
    assert args.model_name_or_path == "m" and args.per_device_train_batch_size == 4
    err = capsys.readouterr().err
    assert "--model-id" not in err and "--batch-size is deprecated" in err


class Interrupted(Exception):
    """Stands in for a preemption: the job dies after a checkpoint was saved."""


def test_a_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path, tiny_model, monkeypatch):
    from transformers import TrainerCallback

    from dlm.training import train_dpo

    data = write(tmp_path / "d.jsonl", rows(PAIRS, [1.0, 2.0, 0.5, 1.0]))
    over = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2, "learning_rate": 0.01}
    whole = train_dpo.train(data, tmp_path / "whole", settings(tiny_model, **over))
    assert whole["restarts"] == []

    class StopAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Interrupted

    attach = train_dpo.progress.attach
    monkeypatch.setattr(train_dpo.progress, "attach", lambda t, name: (t.add_callback(StopAtStep3()), attach(t, name)))
    with pytest.raises(Interrupted):
        train_dpo.train(data, tmp_path / "cut", settings(tiny_model, **over), resume=True)
    monkeypatch.setattr(train_dpo.progress, "attach", attach)
    (tmp_path / "cut/checkpoint-3").mkdir()  # a save cut off before its trainer_state.json: never resumed from
    resumed = train_dpo.train(data, tmp_path / "cut", settings(tiny_model, **over), resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4
    assert [r["from_step"] for r in resumed["restarts"]] == [2]
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tmp_path / "whole").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "cut").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    start = initial_params(tiny_model)
    assert not all(torch.allclose(a[k], start[k], atol=1e-6) for k in a)  # it did train


def test_checkpoints_of_another_dataset_are_not_resumed(tmp_path, tiny_model):
    from dlm.training.train_dpo import train

    over = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1}
    train(write(tmp_path / "a.jsonl", rows(PAIRS, [1.0] * 4)), tmp_path / "r", settings(tiny_model, **over))
    other = train(write(tmp_path / "b.jsonl", rows(PAIRS[:2], [1.0] * 2)), tmp_path / "r",
                  settings(tiny_model, **over), resume=True)
    assert other["resumed_from"] is None and other["restarts"] == []
