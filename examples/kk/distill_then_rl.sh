#!/bin/sh
# Knights and knaves, distillation then RL for a small model (the seed: github.com/wutong4012/slm_rl,
# distill_from_7b.sh, run_kk_sft_with_distillation_4gpus.sh, run_logicRL_cold_4gpus.sh):
#   1. the teacher (grpo_7b.sh's step-380 policy) samples 5 answers per 5-person training puzzle
#      (trainer.main_generation, temperature 1.0, top_k 50, top_p 0.7, prompts <= 512, answers <= 2048);
#   2. rejection sampling keeps one fully correct answer per puzzle (dataset.rejection_sample --keep
#      first; the seed kept 899 of 900 puzzles);
#   3. SFT of Qwen2.5-1.5B-Instruct on them (trainer.main_offline: lr 1e-5, no warmup, 64 per step,
#      4 epochs, sequences <= 2600 tokens), exported as a transformers folder;
#   4. GRPO from the SFT model (trainer.main_rl: n 32 at temperature 1.0, 32 prompts per step, lr 1e-6,
#      KL loss 0.001; the seed reports 0.89 average over 2..8 people at step 360).
#
#   sh examples/kk/distill_then_rl.sh
#   STAGES="3 4" sh examples/kk/distill_then_rl.sh      # SFT and RL only (stages 1-2 done)
#   sh examples/kk/distill_then_rl.sh trainer.dry_run=true trainer.check_devices=false   # plan, CPU box
#
# Environment: TEACHER_PATH [checkpoints/kk/kk-grpo-7b/global_step_380/actor/huggingface],
# STUDENT_PATH [Qwen/Qwen2.5-1.5B-Instruct], DATA_DIR [~/data/kk/instruct], TRAIN_FILES
# [$DATA_DIR/5ppl/train.parquet], VAL_FILES [$DATA_DIR/5ppl/test.parquet], OUT_DIR [checkpoints/kk/distill],
# STAGES ["1 2 3 4"], N_GPUS_PER_NODE [4], RL_STEPS [360], PYTHON / RELIFT_VENV.
# Extra arguments are Hydra overrides for every Hydra stage (1, 3, 4): use keys all three accept
# (trainer.dry_run=true, trainer.seed=2). A dry run plans stages 1, 3, 4 with stand-ins for what
# earlier stages would make (said on screen) and skips stage 2.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
kk_help "$0" "$@"
PY=$(kk_python)

TEACHER_PATH="${TEACHER_PATH:-checkpoints/kk/kk-grpo-7b/global_step_380/actor/huggingface}"
STUDENT_PATH="${STUDENT_PATH:-Qwen/Qwen2.5-1.5B-Instruct}"
DATA_DIR="${DATA_DIR:-$HOME/data/kk/instruct}"
TRAIN_FILES="${TRAIN_FILES:-$DATA_DIR/5ppl/train.parquet}"
VAL_FILES="${VAL_FILES:-$DATA_DIR/5ppl/test.parquet}"
OUT_DIR="${OUT_DIR:-checkpoints/kk/distill}"
STAGES="${STAGES:-1 2 3 4}"
NGPU="${N_GPUS_PER_NODE:-4}"
dry=0; if kk_is_dry "$@"; then dry=1; fi
want() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }

samples="$OUT_DIR/teacher_samples.parquet"
sft_file="$OUT_DIR/sft.parquet"
sft_dir="$OUT_DIR/sft"

if want 1; then
    teacher="$TEACHER_PATH"
    if [ "$dry" = 1 ] && [ ! -d "$teacher" ]; then
        teacher=Qwen/Qwen2.5-7B-Instruct-1M
        kk_say "dry run: $TEACHER_PATH does not exist yet (grpo_7b.sh makes it); planning with $teacher"
    fi
    kk_say "1/4 teacher samples: 5 per puzzle of $TRAIN_FILES -> $samples"
    "$PY" -m trainer.main_generation \
        data.path="$TRAIN_FILES" data.output_path="$samples" data.n_samples=5 data.batch_size=128 \
        data.max_prompt_length=512 data.max_response_length=2048 \
        model.path="$teacher" \
        rollout.name=vllm rollout.temperature=1.0 rollout.top_k=50 rollout.top_p=0.7 \
        rollout.gpu_memory_utilization=0.7 \
        trainer.device=cuda trainer.nnodes=1 trainer.n_gpus_per_node="$NGPU" \
        "$@"
fi

if want 2; then
    if [ "$dry" = 1 ]; then
        kk_say "dry run: skipping 2/4 (rejection sampling reads stage 1's $samples)"
    else
        kk_say "2/4 rejection sampling: one correct answer per puzzle -> $sft_file"
        "$PY" -m dataset.rejection_sample --input "$samples" --output "$sft_file" --keep first
    fi
fi

if want 3; then
    sft_data="$sft_file"; response_key=target
    if [ "$dry" = 1 ] && [ ! -f "$sft_file" ]; then
        sft_data="$TRAIN_FILES"; response_key=solution_text_format
        kk_say "dry run: $sft_file does not exist yet; planning SFT on $sft_data (column $response_key)"
    fi
    kk_say "3/4 SFT of $STUDENT_PATH on $sft_data -> $sft_dir/hf"
    "$PY" -m trainer.main_offline \
        data.train_files="$sft_data" data.prompt_key=prompt data.response_key="$response_key" \
        data.max_length=2600 data.truncation=filter data.train_batch_size=64 data.micro_batch_size_per_gpu=16 \
        model.path="$STUDENT_PATH" model.enable_gradient_checkpointing=true \
        model.fsdp_config.mixed_precision=bf16 \
        optim.lr=1e-5 optim.lr_warmup_steps_ratio=0.0 optim.lr_scheduler_type=constant \
        trainer.total_epochs=4 trainer.export_hf=true trainer.default_local_dir="$sft_dir" \
        trainer.project_name=kk trainer.experiment_name=distill-sft \
        trainer.device=cuda trainer.nnodes=1 trainer.n_gpus_per_node="$NGPU" \
        "$@"
fi

if want 4; then
    student="$sft_dir/hf"
    if [ "$dry" = 1 ] && [ ! -d "$student" ]; then
        student="$STUDENT_PATH"
        kk_say "dry run: $sft_dir/hf does not exist yet; planning GRPO with $student"
    fi
    kk_say "4/4 GRPO from $student, n 32 -> $OUT_DIR/rl"
    "$PY" -m trainer.main_rl \
        data.train_files="$TRAIN_FILES" data.val_files="$VAL_FILES" \
        data.train_batch_size=32 data.val_batch_size=128 data.max_prompt_length=512 data.max_response_length=2048 \
        actor_rollout_ref.model.path="$student" \
        actor_rollout_ref.model.enable_gradient_checkpointing=true \
        actor_rollout_ref.actor.optim.lr=1e-6 \
        actor_rollout_ref.actor.ppo_mini_batch_size=32 \
        actor_rollout_ref.actor.use_dynamic_bsz=true actor_rollout_ref.actor.ppo_max_token_len_per_gpu=12000 \
        actor_rollout_ref.actor.use_kl_loss=true actor_rollout_ref.actor.kl_loss_coef=0.001 \
        actor_rollout_ref.actor.kl_loss_type=low_var_kl \
        actor_rollout_ref.actor.fsdp_config.mixed_precision=bf16 \
        'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' \
        actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
        actor_rollout_ref.rollout.gpu_memory_utilization=0.5 actor_rollout_ref.rollout.free_cache_engine=false \
        actor_rollout_ref.rollout.n=32 actor_rollout_ref.rollout.temperature=1.0 \
        actor_rollout_ref.rollout.max_num_batched_tokens=8192 \
        actor_rollout_ref.ref.fsdp_config.param_offload=true \
        algorithm.adv_estimator=grpo algorithm.kl_ctrl.kl_coef=0.001 \
        trainer.project_name=kk trainer.experiment_name=distill-grpo trainer.default_local_dir="$OUT_DIR/rl" \
        trainer.device=cuda trainer.nnodes=1 trainer.n_gpus_per_node="$NGPU" \
        trainer.total_epochs=1000 trainer.total_training_steps="${RL_STEPS:-360}" \
        trainer.save_freq=40 trainer.test_freq=5 trainer.resume_mode=auto \
        'trainer.logger=[console,jsonl]' \
        "$@"
fi
kk_say "done: $OUT_DIR"
