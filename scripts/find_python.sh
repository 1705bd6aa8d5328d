# The one interpreter lookup of every shell entry point (POSIX sh; sourced, defines a function only).
#
#   repo=<the checkout>; . "$repo/scripts/find_python.sh"; relift_find_python NAME
#
# sets PYTHON to, in this order: $PYTHON when already set (a path, or a command on PATH); else
# $RELIFT_VENV/bin/python when RELIFT_VENV is set; else <repo>/.venv/bin/python. A bare `python3`
# from PATH is never picked on its own: it usually lacks Hydra, torch and relift (an explicit PYTHON
# that cannot import hydra is refused for the same reason). When the chosen
# interpreter does not exist, it prints which one it looked for, why, and how to create it
# (`bash scripts/setup_env.sh`), then exits with status 2 (callers that must not exit run it in a
# subshell). NAME prefixes the message.
relift_find_python() {
    if [ -n "${PYTHON:-}" ]; then
        _relift_py_why="PYTHON is set"
        case "$PYTHON" in
            */*) ;;
            *) PYTHON="$(command -v "$PYTHON" 2>/dev/null || echo "$PYTHON")" ;;
        esac
    elif [ -n "${RELIFT_VENV:-}" ]; then
        PYTHON="$RELIFT_VENV/bin/python"
        _relift_py_why="RELIFT_VENV=$RELIFT_VENV"
    else
        PYTHON="$repo/.venv/bin/python"
        _relift_py_why="the checkout's own environment; RELIFT_VENV is not set"
    fi
    if [ ! -x "$PYTHON" ]; then
        echo "[$1] no python at $PYTHON ($_relift_py_why). Create the environment with:" \
             "bash scripts/setup_env.sh (run in $repo; it makes $repo/.venv, or RELIFT_VENV=<dir> puts it" \
             "elsewhere), or set RELIFT_VENV to an existing environment with relift installed" >&2
        exit 2
    fi
    if [ "$_relift_py_why" = "PYTHON is set" ] \
        && ! "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("hydra") is None)' 2>/dev/null; then
        echo "[$1] PYTHON=$PYTHON is not relift's environment (it cannot import hydra): unset PYTHON to use" \
             "RELIFT_VENV or $repo/.venv, or create one with: bash scripts/setup_env.sh (run in $repo)" >&2
        exit 2
    fi
    unset _relift_py_why
}
