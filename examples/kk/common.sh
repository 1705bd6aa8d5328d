# Sourced by the knights-and-knaves recipes (POSIX sh); the caller sets $here to its own folder.
# kk_repo: the checkout; kk_python: the interpreter ($PYTHON, else $RELIFT_VENV/bin/python, else
# <repo>/.venv/bin/python); kk_help FILE ARGS: print FILE's header and exit when ARGS hold -h/--help;
# kk_is_dry ARGS: true when ARGS hold trainer.dry_run=true (plan only: later stages plan with stand-ins).
kk_repo=$(cd "$here/../.." && pwd)
export PYTHONPATH="$kk_repo${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}" HYDRA_FULL_ERROR=1

kk_python() {
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
    elif [ -n "${RELIFT_VENV:-}" ] && [ -x "$RELIFT_VENV/bin/python" ]; then
        echo "$RELIFT_VENV/bin/python"
    elif [ -x "$kk_repo/.venv/bin/python" ]; then
        echo "$kk_repo/.venv/bin/python"
    else
        echo "no python environment: run 'bash $kk_repo/scripts/setup_env.sh' (creates $kk_repo/.venv)," \
             "or set RELIFT_VENV or PYTHON" >&2
        return 1
    fi
}

kk_help() {
    file=$1; shift
    for a in "$@"; do
        case "$a" in -h|--help)
            sed -n '2,/^[^#]/p' "$file" | sed -e '/^[^#]/d' -e 's/^# \{0,1\}//'
            exit 0 ;;
        esac
    done
}

kk_is_dry() {
    for a in "$@"; do
        case "$a" in trainer.dry_run=true|trainer.dry_run=True|trainer.dry_run=1) return 0 ;; esac
    done
    return 1
}

kk_say() { echo "[kk] $*"; }
