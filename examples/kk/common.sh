# Sourced by the knights-and-knaves recipes (POSIX sh); the caller sets $here to its own folder.
# kk_repo: the checkout; kk_python: the interpreter (scripts/find_python.sh: $PYTHON, else
# $RELIFT_VENV/bin/python, else <repo>/.venv/bin/python, else exit 2 saying how to create it);
# kk_help FILE ARGS: print FILE's header and exit when ARGS hold -h/--help;
# kk_is_dry ARGS: true when ARGS hold trainer.dry_run=true (plan only: later stages plan with stand-ins).
kk_repo=$(cd "$here/../.." && pwd)
export PYTHONPATH="$kk_repo${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}" HYDRA_FULL_ERROR=1

. "$kk_repo/scripts/find_python.sh"
kk_python() {  # scripts/find_python.sh's lookup; prints the interpreter (exit 2 with the fix when there is none)
    repo="$kk_repo"
    relift_find_python kk
    echo "$PYTHON"
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
