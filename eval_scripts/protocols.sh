# Evaluation protocol presets, sourced by eval_math.sh: PROTOCOL=redi|relift|rlvsdistill|kk.
# A preset only fills variables the user left unset, so `PROTOCOL=redi N_SAMPLES=4 ...` keeps n = 4.
# POSIX sh (no bash features), so it can be sourced from any shell and tested with `sh`.
#
# redi         REDI's evaluation, which follows DeepScaleR's: AIME24, AMC23, MATH-500, Minerva,
#              OlympiadBench; temperature 0.6, top_p 0.95, 16 samples per question (pass@1 = mean@16),
#              up to 32768 response tokens. Source: REDI (arXiv 2505.24850) evaluation section and the
#              DeepScaleR blog's evaluation setup; REFERENCE.md section 6.
# relift       ReLIFT's validation: its own valid.parquet (AIME24/AIME25 rows repeated 8x, AMC 4x, MATH-500,
#              OlympiadBench; rows pooled per question by trainer.main_eval, so AIME is avg@8), 1 sample
#              per row, temperature 0.6, top_p 1.0, 8192 response tokens. Source: the public ReLIFT
#              training script's validation settings (val_kwargs n 1, T 0.6, top_p 1.0, 8192 tokens);
#              REFERENCE.md section 4.
# rlvsdistill  The RL-vs-distillation capability analysis (Kim et al., arXiv 2505.14216): many samples per
#              question so pass@k can be read up to k = 256, on MATH-500 by default, then
#              trainer.main_capability (pass@k curve, solve-rate histogram). The paper's exact sampling
#              temperature could not be checked from here: T 0.6 / top_p 0.95 (the REDI values) are used;
#              set TEMPERATURE/TOP_P to match a specific run.
# kk           Knights-and-knaves: the Logic-RL test files <N>ppl/test.parquet under KK_DIR, one table row
#              per puzzle size (eval.group_by=kk_people) plus the average, the layout of the KK seed's
#              tables (Avg, 2ppl ... 8ppl). One sample per puzzle at the temperature the seed used per model
#              type (KK_MODEL): rl = 1.0 (its RL-trained models), instruct = 0 (greedy, baseline instruct
#              models), r1distill = 0.6 (DeepSeek-R1 distills). Source: the seed's README
#              (github.com/Tim-Siu/reft-exp, "For our models, we sampled once at temperature=1.0 ...").
#              The prompts in these files are already chat-formatted, so the chat template is not applied.

apply_protocol() {
    case "${PROTOCOL:-}" in
        "") ;;
        redi)
            : "${BENCHMARKS:=aime24,amc23,math500,minerva_math,olympiadbench}"
            : "${N_SAMPLES:=16}" "${TEMPERATURE:=0.6}" "${TOP_P:=0.95}" "${MAX_RESPONSE_LENGTH:=32768}"
            ;;
        relift)
            : "${DATA_FILES:=${RELIFT_VALID:-$repo/data/relift/valid.parquet}}"
            : "${N_SAMPLES:=1}" "${TEMPERATURE:=0.6}" "${TOP_P:=1.0}" "${MAX_RESPONSE_LENGTH:=8192}"
            ;;
        rlvsdistill)
            : "${BENCHMARKS:=math500}"
            : "${N_SAMPLES:=256}" "${TEMPERATURE:=0.6}" "${TOP_P:=0.95}" "${CAPABILITY:=1}"
            ;;
        kk)
            kk_dir="${KK_DIR:-$repo/data/kk}"
            if [ -z "${DATA_FILES:-}" ]; then
                DATA_FILES=""
                for f in "$kk_dir"/*ppl/test.parquet; do
                    [ -f "$f" ] && DATA_FILES="${DATA_FILES:+$DATA_FILES,}$f"
                done
                if [ -z "$DATA_FILES" ]; then
                    echo "[eval_math] PROTOCOL=kk: no <N>ppl/test.parquet under $kk_dir; set KK_DIR to the Logic-RL" \
                         "data folder (3ppl/test.parquet, 4ppl/test.parquet, ...) or DATA_FILES to the files" >&2
                    return 2
                fi
            fi
            case "${KK_MODEL:-rl}" in
                rl) : "${TEMPERATURE:=1.0}" ;;
                instruct) : "${TEMPERATURE:=0}" ;;
                r1distill) : "${TEMPERATURE:=0.6}" ;;
                *) echo "[eval_math] KK_MODEL must be rl, instruct or r1distill, got '$KK_MODEL'" >&2; return 2 ;;
            esac
            : "${N_SAMPLES:=1}" "${TOP_P:=1.0}" "${APPLY_CHAT_TEMPLATE:=false}"
            EVAL_ARGS="eval.group_by=kk_people${EVAL_ARGS:+ $EVAL_ARGS}"
            ;;
        *)
            echo "[eval_math] unknown PROTOCOL '$PROTOCOL'; choose redi, relift, rlvsdistill or kk" >&2
            return 2
            ;;
    esac
    return 0
}
