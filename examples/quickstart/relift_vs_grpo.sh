#!/usr/bin/env bash
# ReLIFT vs GRPO on CPU (issue 11, item 8): does fine-tuning on the hardest questions reach what RL alone cannot?
#
#   sh examples/quickstart/relift_vs_grpo.sh                         # 3 seeds x (SFT, GRPO, ReLIFT)
#   SEEDS="1" RL_STEPS=20 OUT_DIR=outputs/rvg-small sh examples/quickstart/relift_vs_grpo.sh
#
# The task (dataset/relift_toy.py): the quickstart's toy arithmetic with a harder level (4: three-digit +
# two-digit) that is in the RL data, with demonstrations, but NOT in the SFT warm-start data. Per seed:
# (1) a tiny model and one SFT warm start on levels 1-3; (2) GRPO and ReLIFT (relift.enable=true: prompts no
# rollout solved go to the buffer, each relift.sft_batch_size of them get one fine-tuning step) from that
# same warm start, same steps, same seed, same data order; validation on all levels, the hard level reported
# apart (data_source toy_arithmetic_hard). Then examples/quickstart/relift_report.py writes
# $OUT_DIR/relift_vs_grpo.json (records {"method", "seed", "hard_acc", "rest_acc", "pass_at_k": {k: value}
# on the hard part, "demo_fraction"}), $OUT_DIR/relift_vs_grpo.png and prints a table.
#
# Environment: OUT_DIR [outputs/relift_vs_grpo], SEEDS ["1 2 3"], METHODS ["grpo relift"], BACKEND [auto],
# REUSE_SFT=1 (keep an existing warm start of a seed), and the knobs below (sizes as the quickstart's).
# Extra arguments are Hydra overrides for both RL runs.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

OUT_DIR="${OUT_DIR:-outputs/relift_vs_grpo}"
SEEDS="${SEEDS:-1 2 3}"
METHODS="${METHODS:-grpo relift}"
BACKEND="${BACKEND:-auto}"
DATA_SEED="${DATA_SEED:-0}"           # the task stays fixed across seeds
TRAIN_SIZE="${TRAIN_SIZE:-4000}"
VAL_SIZE="${VAL_SIZE:-400}"
HARD_LEVEL="${HARD_LEVEL:-4}"
WORKED_FRAC="${WORKED_FRAC:-0.5}"
HIDDEN="${HIDDEN:-128}"
LAYERS="${LAYERS:-3}"
SFT_STEPS="${SFT_STEPS:-400}"
SFT_BATCH="${SFT_BATCH:-64}"
SFT_LR="${SFT_LR:-3e-3}"
RL_STEPS="${RL_STEPS:-200}"
RL_BATCH="${RL_BATCH:-32}"
RL_N="${RL_N:-8}"
RL_LR="${RL_LR:-2e-4}"
RL_WARMUP="${RL_WARMUP:-20}"
RL_TEST_FREQ="${RL_TEST_FREQ:-50}"
VAL_N="${VAL_N:-4}"                   # samples per validation prompt; pass@k up to k = VAL_N
VAL_TEMPERATURE="${VAL_TEMPERATURE:-1.0}"
RELIFT_SFT_BATCH="${RELIFT_SFT_BATCH:-16}"   # demonstrations per ReLIFT fine-tuning step
RELIFT_LR="${RELIFT_LR:-$RL_LR}"             # as the paper: the same lr as RL
RELIFT_SFT_OPTIMIZER="${RELIFT_SFT_OPTIMIZER:-separate}"  # as the paper: its own AdamW (shared: the RL AdamW)
RESPONSE_LEN=48                               # the longest level-4 worked demonstration is 36 tokens + EOS
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1

PYTHON="$(bash scripts/setup_env.sh | tail -n 1)"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
start=$(date +%s)
stamp() { echo "[relift_vs_grpo] $(( $(date +%s) - start ))s: $*"; }

stamp "toy data (hard level $HARD_LEVEL held out of SFT) -> $OUT_DIR/data"
"$PYTHON" -m dataset.relift_toy --out "$OUT_DIR/data" --train-size "$TRAIN_SIZE" --val-size "$VAL_SIZE" \
    --hard-level "$HARD_LEVEL" --worked-frac "$WORKED_FRAC" --seed "$DATA_SEED"

for SEED in $SEEDS; do
    S_DIR="$OUT_DIR/seed$SEED"
    if [ "${REUSE_SFT:-0}" = "1" ] && [ -f "$S_DIR/sft/hf/config.json" ]; then
        stamp "seed $SEED: reusing the warm start in $S_DIR/sft/hf"
    else
        stamp "seed $SEED: tiny model + SFT warm start ($SFT_STEPS steps, levels without $HARD_LEVEL)"
        "$PYTHON" -m relift.models.tiny --out "$S_DIR/model" --hidden-size "$HIDDEN" --num-layers "$LAYERS" \
            --num-heads 4 --num-kv-heads 4 --intermediate-size $(( 2 * HIDDEN )) --max-position-embeddings 128 \
            --seed "$SEED"
        "$PYTHON" -m trainer.main_offline \
            data.train_files="$OUT_DIR/data/sft.parquet" \
            data.max_length=96 data.train_batch_size="$SFT_BATCH" data.micro_batch_size_per_gpu="$SFT_BATCH" \
            model.path="$S_DIR/model" \
            optim.lr="$SFT_LR" optim.lr_scheduler_type=cosine optim.lr_warmup_steps=20 optim.weight_decay=0.0 \
            'optim.betas=[0.9,0.99]' \
            trainer.total_epochs=100 trainer.total_training_steps="$SFT_STEPS" trainer.test_freq=-1 \
            trainer.default_local_dir="$S_DIR/sft" trainer.resume_mode=disable trainer.seed="$SEED" \
            trainer.device=cpu trainer.backend="$BACKEND" trainer.export_hf=true \
            trainer.experiment_name="rvg-sft-seed$SEED"
    fi
    for METHOD in $METHODS; do
        case "$METHOD" in
            grpo) hook="relift.enable=false" ;;
            relift) hook="relift.enable=true" ;;
            *) echo "unknown method $METHOD (expected grpo or relift)" >&2; exit 2 ;;
        esac
        stamp "seed $SEED: $METHOD ($RL_STEPS steps x $RL_BATCH prompts x $RL_N samples) -> $S_DIR/$METHOD"
        "$PYTHON" -m trainer.main_rl \
            data.train_files="$OUT_DIR/data/rl.parquet" data.val_files="$OUT_DIR/data/val.parquet" \
            data.max_prompt_length=32 data.max_response_length="$RESPONSE_LEN" \
            data.max_target_length="$RESPONSE_LEN" data.target_key=target data.train_batch_size="$RL_BATCH" \
            actor_rollout_ref.model.path="$S_DIR/sft/hf" \
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
            "$hook" relift.max_acc=0.0 relift.sft_batch_size="$RELIFT_SFT_BATCH" \
            relift.sft_micro_batch_size_per_gpu="$RELIFT_SFT_BATCH" relift.lr="$RELIFT_LR" \
            relift.entropy_coeff=0.001 relift.sft_optimizer="$RELIFT_SFT_OPTIMIZER" \
            trainer.total_training_steps="$RL_STEPS" trainer.total_epochs=100 trainer.test_freq="$RL_TEST_FREQ" \
            trainer.val_before_train=true trainer.save_freq=-1 \
            trainer.default_local_dir="$S_DIR/$METHOD" trainer.resume_mode=disable trainer.seed="$SEED" \
            trainer.device=cpu trainer.backend="$BACKEND" trainer.logger='[console,jsonl]' \
            trainer.experiment_name="rvg-$METHOD-seed$SEED" "$@"
    done
done

stamp "report"
"$PYTHON" examples/quickstart/relift_report.py --out-dir "$OUT_DIR" --seeds "$SEEDS" --methods "$METHODS"
stamp "done in $(( $(date +%s) - start ))s"
