#!/usr/bin/env bash
# The CPU quickstart (README command 1): a tiny model learns toy arithmetic, SFT warm start then GRPO.
#
#   sh examples/quickstart/train.sh                  # ~3 min on 2 CPU cores, after the install
#   SEED=2 OUT_DIR=outputs/qs2 sh examples/quickstart/train.sh
#
# Stages: (0) venv via scripts/setup_env.sh; (1) toy arithmetic parquet (dataset/toy_arithmetic.py);
# (2) a tiny random Qwen2 model (relift.models.tiny); (3) SFT warm start on the demonstrations
# (trainer.main_offline, exports $OUT_DIR/sft/hf); (4) GRPO from the SFT model (trainer.main_rl,
# validates before training, every RL_TEST_FREQ steps and at the end, metrics in
# $OUT_DIR/rl/metrics.jsonl, the final policy also as a transformers folder in
# $OUT_DIR/rl/global_step_$RL_STEPS/actor/huggingface); (5) a table of validation accuracy after
# SFT vs after RL and a PNG of reward and validation accuracy per step (examples/quickstart/report.py).
#
# Environment: OUT_DIR (default outputs/quickstart/seed$SEED), SEED (model init, sampling; default 1),
# RELIFT_CPU_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS (default 2 each: repeatable numbers),
# BACKEND (auto | inprocess | ray), REUSE_SFT=1 (skip stages 1-3 when $OUT_DIR/sft/hf exists: RL only),
# and the knobs below. Extra arguments are Hydra overrides for the
# RL stage, e.g. `sh examples/quickstart/train.sh algorithm.adv_estimator=rloo`.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

SEED="${SEED:-1}"
OUT_DIR="${OUT_DIR:-outputs/quickstart/seed$SEED}"
BACKEND="${BACKEND:-auto}"
DATA_SEED="${DATA_SEED:-0}"           # the task itself stays fixed across SEEDs
TRAIN_SIZE="${TRAIN_SIZE:-4000}"
VAL_SIZE="${VAL_SIZE:-300}"
LEVELS="${LEVELS:-1,2,3}"
WORKED_FRAC="${WORKED_FRAC:-0.5}"
HIDDEN="${HIDDEN:-128}"
LAYERS="${LAYERS:-3}"
SFT_STEPS="${SFT_STEPS:-400}"
SFT_BATCH="${SFT_BATCH:-64}"
SFT_LR="${SFT_LR:-3e-3}"
RL_STEPS="${RL_STEPS:-200}"
RL_BATCH="${RL_BATCH:-32}"           # prompts per step
RL_N="${RL_N:-8}"                    # samples per prompt
RL_LR="${RL_LR:-2e-4}"
RL_WARMUP="${RL_WARMUP:-20}"         # linear warmup steps: softens the first Adam steps
RL_TEST_FREQ="${RL_TEST_FREQ:-25}"
VAL_N="${VAL_N:-4}"
VAL_TEMPERATURE="${VAL_TEMPERATURE:-1.0}"
# Two torch threads, on any machine: RELIFT_CPU_THREADS pins the trainer's own count (otherwise chosen
# from the node's cores, which differ from machine to machine: docs/performance.md). The thread count
# changes floating-point summation order, so a fixed count is what makes the numbers repeatable and
# the same on machines with more cores (docs/quickstart.md, repeatable runs); two is what a laptop
# has at least, and the reward processes score between the torch passes, not during them.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-2}"
export RELIFT_CPU_THREADS="${RELIFT_CPU_THREADS:-2}"
export TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1

PYTHON="$(bash scripts/setup_env.sh | tail -n 1)"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
start=$(date +%s)
stamp() { echo "[quickstart] $(( $(date +%s) - start ))s: $*"; }

if [ "${REUSE_SFT:-0}" = "1" ] && [ -f "$OUT_DIR/sft/hf/config.json" ]; then
    stamp "1-3/5 REUSE_SFT=1: reusing the data and SFT model in $OUT_DIR"
else
stamp "1/5 toy arithmetic data -> $OUT_DIR/data"
"$PYTHON" -m dataset.toy_arithmetic --out "$OUT_DIR/data" --train-size "$TRAIN_SIZE" --val-size "$VAL_SIZE" \
    --levels "$LEVELS" --worked-frac "$WORKED_FRAC" --seed "$DATA_SEED"

stamp "2/5 tiny model (hidden $HIDDEN, $LAYERS layers, seed $SEED) -> $OUT_DIR/model"
"$PYTHON" -m relift.models.tiny --out "$OUT_DIR/model" --hidden-size "$HIDDEN" --num-layers "$LAYERS" \
    --num-heads 4 --num-kv-heads 4 --intermediate-size $(( 2 * HIDDEN )) --max-position-embeddings 128 \
    --seed "$SEED"

stamp "3/5 SFT warm start ($SFT_STEPS steps x $SFT_BATCH demonstrations) -> $OUT_DIR/sft"
"$PYTHON" -m trainer.main_offline \
    data.train_files="$OUT_DIR/data/train.parquet" data.val_files="$OUT_DIR/data/val.parquet" \
    data.max_length=64 data.train_batch_size="$SFT_BATCH" data.micro_batch_size_per_gpu="$SFT_BATCH" \
    model.path="$OUT_DIR/model" \
    optim.lr="$SFT_LR" optim.lr_scheduler_type=cosine optim.lr_warmup_steps=20 optim.weight_decay=0.0 \
    'optim.betas=[0.9,0.99]' \
    trainer.total_epochs=100 trainer.total_training_steps="$SFT_STEPS" trainer.test_freq="$SFT_STEPS" \
    trainer.default_local_dir="$OUT_DIR/sft" trainer.resume_mode=disable trainer.seed="$SEED" \
    trainer.device=cpu trainer.backend="$BACKEND" trainer.export_hf=true \
    trainer.experiment_name="quickstart-sft-seed$SEED"
fi

stamp "4/5 GRPO ($RL_STEPS steps x $RL_BATCH prompts x $RL_N samples) -> $OUT_DIR/rl"
"$PYTHON" -m trainer.main_rl \
    data.train_files="$OUT_DIR/data/train.parquet" data.val_files="$OUT_DIR/data/val.parquet" \
    data.max_prompt_length=32 data.max_response_length=32 data.train_batch_size="$RL_BATCH" \
    actor_rollout_ref.model.path="$OUT_DIR/sft/hf" \
    actor_rollout_ref.rollout.n="$RL_N" actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.rollout.val_kwargs.n="$VAL_N" \
    actor_rollout_ref.rollout.val_kwargs.temperature="$VAL_TEMPERATURE" \
    actor_rollout_ref.rollout.val_kwargs.do_sample=true \
    actor_rollout_ref.actor.ppo_mini_batch_size="$RL_BATCH" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=$(( RL_BATCH * RL_N )) \
    actor_rollout_ref.actor.optim.lr="$RL_LR" actor_rollout_ref.actor.optim.lr_warmup_steps="$RL_WARMUP" \
    actor_rollout_ref.actor.optim.weight_decay=0.0 \
    'actor_rollout_ref.actor.optim.betas=[0.9,0.99]' \
    algorithm.adv_estimator=grpo \
    trainer.total_training_steps="$RL_STEPS" trainer.total_epochs=100 trainer.test_freq="$RL_TEST_FREQ" \
    trainer.val_before_train=true trainer.save_freq="$RL_STEPS" \
    'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' \
    trainer.default_local_dir="$OUT_DIR/rl" trainer.resume_mode=disable trainer.seed="$SEED" \
    trainer.device=cpu trainer.backend="$BACKEND" trainer.logger='[console,jsonl]' \
    trainer.experiment_name="quickstart-rl-seed$SEED" "$@"

stamp "5/5 report"
"$PYTHON" examples/quickstart/report.py --out-dir "$OUT_DIR" --wall-s "$(( $(date +%s) - start ))"
stamp "done"
