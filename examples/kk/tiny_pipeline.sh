#!/bin/sh
# The distill-then-RL pipeline of distill_then_rl.sh end to end on this CPU, with tiny models (docs/kk.md):
#   1. puzzles of 2..8 people (dataset.kk generate: the benchmark's statement distribution, but names
#      from a pool of NAME_POOL so a tiny model can learn to spell them; compact prompt ending in <think>);
#   2. a tiny "teacher" (relift.models.tiny) fine-tuned briefly on the 2-person training puzzles'
#      answers (trainer.main_offline);
#   3. the teacher samples 5 answers per 2-person training puzzle (trainer.main_generation; temperature
#      0.6, where the seed used 1.0: a briefly trained tiny teacher misspells names at 1.0);
#   4. rejection sampling keeps one correct answer per puzzle (dataset.rejection_sample --keep first);
#   5. a smaller "student" is fine-tuned on them (trainer.main_offline);
#   6. GRPO on the student (trainer.main_rl, 2-person puzzles, Logic-RL reward);
#   7. examples/kk/eval.sh: teacher, student after SFT and after RL on the test puzzles of every size,
#      the seed's table (rows = models, columns = Avg, 2ppl..8ppl), also written to $OUT_DIR/table.md.
#
#   sh examples/kk/tiny_pipeline.sh                   # about 10-15 min on 2 shared CPU cores
#   FAST=1 sh examples/kk/tiny_pipeline.sh            # the CI-sized run (a few minutes)
#
# Environment: OUT_DIR [outputs/kk_tiny], SEED [1], FAST [0] (smaller everything, names from a pool of 4,
# sizes 2-4 evaluated), and the knobs below (TRAIN_SIZE, TEST_SIZE, TEACHER_STEPS, STUDENT_STEPS, RL_STEPS,
# TEACHER_TEMPERATURE, NAME_POOL, EVAL_SIZES, ...), PYTHON / RELIFT_VENV. No learning claim at this size:
# the point is that every stage runs and hands the next one what it needs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
kk_help "$0" "$@"
PY=$(kk_python)

SEED="${SEED:-1}"
OUT_DIR="${OUT_DIR:-outputs/kk_tiny}"
if [ "${FAST:-0}" = 1 ]; then
    : "${TRAIN_SIZE:=96}" "${TEST_SIZE:=4}" "${TEACHER_STEPS:=120}" "${STUDENT_STEPS:=20}" "${RL_STEPS:=2}"
    : "${RL_BATCH:=8}" "${RL_N:=4}" "${EVAL_SIZES:=2 3}" "${NAME_POOL:=4}"
fi
TRAIN_SIZE="${TRAIN_SIZE:-256}"          # 2-person training puzzles
TEST_SIZE="${TEST_SIZE:-16}"             # test puzzles per size
TEACHER_STEPS="${TEACHER_STEPS:-200}"
STUDENT_STEPS="${STUDENT_STEPS:-100}"
TEACHER_TEMPERATURE="${TEACHER_TEMPERATURE:-0.6}"   # the seed sampled at 1.0 (see docs/kk.md)
RL_STEPS="${RL_STEPS:-10}"
RL_BATCH="${RL_BATCH:-16}"
RL_N="${RL_N:-8}"
EVAL_SIZES="${EVAL_SIZES:-2 3 4 5 6 7 8}"
NAME_POOL="${NAME_POOL:-8}"              # names from the first 8 of 51 (>= the most people evaluated)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-2}"
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
start=$(date +%s)
stamp() { kk_say "$(( $(date +%s) - start ))s: $*"; }
CPU="trainer.device=cpu trainer.n_gpus_per_node=1 trainer.backend=inprocess trainer.seed=$SEED"

stamp "1/7 puzzles -> $OUT_DIR/data"
people=$(echo "2 $EVAL_SIZES" | tr -s ' ' ',')
"$PY" -m dataset.kk generate --people "$people" --per-size "$TRAIN_SIZE" --test-per-size "$TEST_SIZE" --seed "$SEED" \
    --template compact --name-pool "$NAME_POOL" --out "$OUT_DIR/data" >/dev/null
"$PY" -m dataset.kk generate --people 2 --per-size "$TRAIN_SIZE" --test-per-size "$TEST_SIZE" --seed "$SEED" \
    --template compact --name-pool "$NAME_POOL" --with-target --out "$OUT_DIR/truth" >/dev/null

stamp "2/7 teacher: tiny model (hidden 128, 2 layers), SFT $TEACHER_STEPS steps on 2-person answers"
"$PY" -m relift.models.tiny --out "$OUT_DIR/teacher_init" --hidden-size 128 --num-layers 2 --num-heads 4 \
    --num-kv-heads 4 --intermediate-size 256 --max-position-embeddings 2048 --seed "$SEED" >/dev/null
# shellcheck disable=SC2086
"$PY" -m trainer.main_offline \
    data.train_files="$OUT_DIR/truth/2ppl/train.parquet" data.response_key=target data.max_length=512 \
    data.train_batch_size=16 data.micro_batch_size_per_gpu=16 \
    model.path="$OUT_DIR/teacher_init" optim.lr=3e-3 optim.lr_scheduler_type=cosine optim.lr_warmup_steps=20 \
    optim.weight_decay=0.0 trainer.total_epochs=1000 trainer.total_training_steps="$TEACHER_STEPS" \
    trainer.default_local_dir="$OUT_DIR/teacher" trainer.resume_mode=disable trainer.export_hf=true \
    'trainer.logger=[jsonl]' $CPU >"$OUT_DIR/teacher.log" 2>&1

stamp "3/7 teacher samples: 5 per 2-person training puzzle, temperature $TEACHER_TEMPERATURE"
# shellcheck disable=SC2086
"$PY" -m trainer.main_generation \
    data.path="$OUT_DIR/data/2ppl/train.parquet" data.output_path="$OUT_DIR/teacher_samples.parquet" \
    data.n_samples=5 data.batch_size=64 data.max_prompt_length=512 data.max_response_length=64 \
    model.path="$OUT_DIR/teacher/hf" rollout.name=hf rollout.temperature="$TEACHER_TEMPERATURE" rollout.top_p=1.0 \
    $CPU >"$OUT_DIR/teacher_samples.log" 2>&1

stamp "4/7 rejection sampling: one correct answer per puzzle"
"$PY" -m dataset.rejection_sample --input "$OUT_DIR/teacher_samples.parquet" --output "$OUT_DIR/distill.parquet" \
    --keep first --num-workers 1 >"$OUT_DIR/rejection.log" 2>&1 || { cat "$OUT_DIR/rejection.log" >&2; exit 1; }
head -n 4 "$OUT_DIR/rejection.log"
kept=$("$PY" -c "import json, sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])['total']['rows_written'])" \
    "$OUT_DIR/rejection.log")
SFT_BATCH=16
if [ "$kept" -lt "$SFT_BATCH" ]; then SFT_BATCH=$kept; fi

stamp "5/7 student: smaller tiny model (hidden 64, 2 layers), SFT $STUDENT_STEPS steps on the $kept kept answers"
"$PY" -m relift.models.tiny --out "$OUT_DIR/student_init" --hidden-size 64 --num-layers 2 --num-heads 4 \
    --num-kv-heads 4 --intermediate-size 128 --max-position-embeddings 2048 --seed "$SEED" >/dev/null
# shellcheck disable=SC2086
"$PY" -m trainer.main_offline \
    data.train_files="$OUT_DIR/distill.parquet" data.response_key=target data.max_length=512 \
    data.train_batch_size="$SFT_BATCH" data.micro_batch_size_per_gpu="$SFT_BATCH" \
    model.path="$OUT_DIR/student_init" optim.lr=3e-3 optim.lr_scheduler_type=cosine optim.lr_warmup_steps=10 \
    optim.weight_decay=0.0 trainer.total_epochs=1000 trainer.total_training_steps="$STUDENT_STEPS" \
    trainer.default_local_dir="$OUT_DIR/student_sft" trainer.resume_mode=disable trainer.export_hf=true \
    'trainer.logger=[jsonl]' $CPU >"$OUT_DIR/student_sft.log" 2>&1

stamp "6/7 GRPO on the student: $RL_STEPS steps x $RL_BATCH puzzles x n $RL_N"
# shellcheck disable=SC2086
"$PY" -m trainer.main_rl \
    data.train_files="$OUT_DIR/data/2ppl/train.parquet" data.val_files="$OUT_DIR/data/2ppl/test.parquet" \
    data.max_prompt_length=512 data.max_response_length=64 data.train_batch_size="$RL_BATCH" \
    actor_rollout_ref.model.path="$OUT_DIR/student_sft/hf" \
    actor_rollout_ref.rollout.n="$RL_N" actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.actor.ppo_mini_batch_size="$RL_BATCH" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=$(( RL_BATCH * RL_N )) \
    actor_rollout_ref.actor.optim.lr=1e-4 actor_rollout_ref.actor.optim.weight_decay=0.0 \
    algorithm.adv_estimator=grpo \
    trainer.total_training_steps="$RL_STEPS" trainer.total_epochs=1000 trainer.test_freq="$RL_STEPS" \
    trainer.val_before_train=false trainer.save_freq="$RL_STEPS" \
    'actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]' \
    trainer.default_local_dir="$OUT_DIR/student_rl" trainer.resume_mode=disable \
    'trainer.logger=[jsonl]' $CPU >"$OUT_DIR/student_rl.log" 2>&1

stamp "7/7 evaluation on the test puzzles of sizes $EVAL_SIZES"
MODELS="teacher=$OUT_DIR/teacher/hf student_sft=$OUT_DIR/student_sft/hf student_rl=$OUT_DIR/student_rl/global_step_$RL_STEPS/actor/huggingface" \
TABLE_OUT="$OUT_DIR/table.md" DATA_DIR="$OUT_DIR/data" SIZES="$EVAL_SIZES" OUT_DIR="$OUT_DIR/eval" \
ROLLOUT=hf DEVICE=cpu N_GPUS_PER_NODE=1 TEMPERATURE=1.0 MAX_PROMPT_LENGTH=1600 RESPONSE_LENGTH=256 \
PYTHON="$PY" sh "$here/eval.sh" trainer.backend=inprocess trainer.seed="$SEED" data.batch_size=64 \
    >"$OUT_DIR/eval.log" 2>&1 || { cat "$OUT_DIR/eval.log" >&2; exit 1; }
cat "$OUT_DIR/table.md"
stamp "done (wall $(( $(date +%s) - start )) s); logs and models in $OUT_DIR"
