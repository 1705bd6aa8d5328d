#!/bin/sh
# Knights and knaves: Logic-RL's REINFORCE++ curriculum (github.com/Unakar/Logic-RL, curriculm_final.sh):
# one epoch on 3-person puzzles, then 4, 5, 6, 7, each stage starting from the previous stage's final
# policy; validation on 5-person puzzles. Settings as the seed's: REINFORCE++ advantages, 8 prompts per
# step, n 8 at temperature 0.7, lr 5e-7, prompts <= 512 and responses <= 4096 tokens, KL loss 0.001
# (low_var_kl), 8 GPUs, vLLM tensor parallel 2. Two deliberate differences: each stage trains on the
# size's train.parquet (the seed's script read test.parquet), and a mini-batch is the whole step
# (8 prompts; the seed's 256 is larger than its batch, which relift refuses).
#
#   sh examples/kk/reinforce_pp_curriculum.sh
#   sh examples/kk/reinforce_pp_curriculum.sh trainer.dry_run=true trainer.check_devices=false
#
# Environment: MODEL_PATH [Qwen/Qwen2.5-7B-Instruct-1M], DATA_DIR [~/data/kk/instruct] (holding
# {N}ppl/train.parquet, made by python -m dataset.kk), SIZES ["3 4 5 6 7"], VAL_FILES
# [$DATA_DIR/5ppl/test.parquet], EXPERIMENT_NAME [kk-rpp-curriculum], CKPT_ROOT [checkpoints/kk],
# N_GPUS_PER_NODE [8], PYTHON / RELIFT_VENV. Extra arguments are Hydra overrides for every stage.
# Stage k's policy is $CKPT_ROOT/$EXPERIMENT_NAME-{k}ppl/global_step_<last>/actor/huggingface.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
kk_help "$0" "$@"
PY=$(kk_python)

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct-1M}"
DATA_DIR="${DATA_DIR:-$HOME/data/kk/instruct}"
SIZES="${SIZES:-3 4 5 6 7}"
VAL_FILES="${VAL_FILES:-$DATA_DIR/5ppl/test.parquet}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-kk-rpp-curriculum}"
CKPT_ROOT="${CKPT_ROOT:-checkpoints/kk}"

model="$MODEL_PATH"
for n in $SIZES; do
    stage="$EXPERIMENT_NAME-${n}ppl"
    kk_say "stage ${n}ppl: from $model -> $CKPT_ROOT/$stage"
    "$PY" -m trainer.main_rl \
        data.train_files="$DATA_DIR/${n}ppl/train.parquet" data.val_files="$VAL_FILES" \
        data.train_batch_size=8 data.max_prompt_length=512 data.max_response_length=4096 \
        actor_rollout_ref.model.path="$model" \
        actor_rollout_ref.model.enable_gradient_checkpointing=true \
        actor_rollout_ref.actor.optim.lr=5e-7 \
        actor_rollout_ref.actor.ppo_mini_batch_size=8 \
        actor_rollout_ref.actor.use_dynamic_bsz=true actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
        actor_rollout_ref.actor.use_kl_loss=true actor_rollout_ref.actor.kl_loss_coef=0.001 \
        actor_rollout_ref.actor.kl_loss_type=low_var_kl \
        actor_rollout_ref.actor.fsdp_config.mixed_precision=bf16 \
        'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' \
        actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
        actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
        actor_rollout_ref.rollout.n=8 actor_rollout_ref.rollout.temperature=0.7 \
        actor_rollout_ref.rollout.max_num_batched_tokens=8192 \
        actor_rollout_ref.ref.fsdp_config.param_offload=true \
        algorithm.adv_estimator=reinforce_plus_plus algorithm.kl_ctrl.kl_coef=0.001 \
        trainer.project_name=kk trainer.experiment_name="$stage" trainer.default_local_dir="$CKPT_ROOT/$stage" \
        trainer.device=cuda trainer.nnodes=1 trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
        trainer.total_epochs=1 trainer.save_freq=60 trainer.test_freq=10 \
        'trainer.logger=[console,jsonl]' \
        "$@"
    if kk_is_dry "$@"; then
        kk_say "dry run: stage ${n}ppl planned; the next stage plans with $model as a stand-in for this stage's policy"
        continue
    fi
    last=$(ls -d "$CKPT_ROOT/$stage"/global_step_* 2>/dev/null | sort -t_ -k3 -n | tail -n 1)
    if [ -z "$last" ] || [ ! -f "$last/actor/huggingface/config.json" ]; then
        echo "stage ${n}ppl left no exported policy in $CKPT_ROOT/$stage/global_step_*/actor/huggingface" >&2
        exit 1
    fi
    model="$last/actor/huggingface"
done
kk_say "curriculum finished: $model"
