"""One GRPO job under TRL's ``GRPOTrainer``, timed per step (runs in the TRL venv, never imports relift).

Called by ``bench/vs_trl/run.py`` as ``python trl_job.py JOB.json OUT.json``. JOB.json holds the
model folder (a relift tiny Qwen2 checkpoint: random weights, local byte tokenizer), the toy
arithmetic parquet, the batch shape and the step count. The job matches relift's side: fp32, CPU,
``num_generations`` samples per prompt, ``per_device_train_batch_size`` = prompts x samples (TRL counts
completions, not prompts) so one generation feeds exactly one optimiser step (``steps_per_generation``
= ``num_iterations`` = 1: on-policy), no KL (``beta=0``, TRL's default), token-mean loss
(``loss_type="dapo"``, as relift's ``loss_agg_mode: token-mean``), no evaluation, no saves.

API used (TRL 1.16, ``trl/trainer/grpo_config.py`` / ``grpo_trainer.py``): ``GRPOConfig(num_generations,
max_completion_length, per_device_train_batch_size, gradient_accumulation_steps, beta, bf16, use_cpu,
save_strategy, eval_strategy, report_to)`` and ``GRPOTrainer(model, reward_funcs, args, train_dataset,
processing_class)``; a reward function takes ``completions`` plus the dataset's extra columns as kwargs.
OUT.json: per-step wall seconds, per-step mean completion length, the torch thread count.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from boxed_reward import boxed_score  # bench/vs_trl/boxed_reward.py, beside this script (sys.path[0])


def _boxed_reward(completions, answer, **_kwargs) -> list[float]:
    """TRL's reward function: :func:`boxed_reward.boxed_score`, the function relift's side calls too."""
    out = []
    for completion, truth in zip(completions, answer):
        text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
        out.append(boxed_score(text, truth))
    return out


def main(job_path: str, out_path: str) -> None:
    import pandas as pd
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    job = json.loads(open(job_path).read())
    torch.manual_seed(job["seed"])
    frame = pd.read_parquet(job["train_file"])
    rows = [
        {"prompt": [dict(m) for m in p], "answer": str(rm["ground_truth"])}
        for p, rm in zip(frame["prompt"], frame["reward_model"])
    ]
    dataset = Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32)

    step_s: list[float] = []
    lengths: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step_s.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp,
            seed=job["seed"],
            use_cpu=True,
            bf16=False,
            learning_rate=job["lr"],
            lr_scheduler_type="constant",
            weight_decay=0.0,
            per_device_train_batch_size=job["prompts"] * job["n"],
            gradient_accumulation_steps=1,
            num_generations=job["n"],
            max_completion_length=job["response_length"],
            temperature=1.0,
            top_p=1.0,
            beta=0.0,
            num_iterations=1,
            loss_type="dapo",
            max_steps=job["steps"],
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=_boxed_reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[Timer()],
        )
        trainer.train()
    result = {
        "system": "trl",
        "step_s": step_s,
        "response_length": lengths,
        "threads": torch.get_num_threads(),
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
    }
    open(out_path, "w").write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
