# Sourced by the shell entry points: sets PYTHON to the interpreter they run, or says how to get one.
# Order: $PYTHON, else $RELIFT_VENV/bin/python, else <repo>/.venv/bin/python. Needs $repo (the checkout);
# the argument names the caller in the message. Exit status 2 when there is no interpreter.
relift_find_python() {
    if [ -z "${PYTHON:-}" ]; then
        if [ -n "${RELIFT_VENV:-}" ]; then PYTHON="$RELIFT_VENV/bin/python"; else PYTHON="$repo/.venv/bin/python"; fi
    fi
    if [ ! -x "$PYTHON" ]; then
        echo "[$1] no python at $PYTHON; create the environment with: bash scripts/setup_env.sh (in $repo)," \
             "or set RELIFT_VENV to an existing one" >&2
        exit 2
    fi
}
