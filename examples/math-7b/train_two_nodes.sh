#!/bin/sh
# ReLIFT's README name for the two-node math-7b run: `sh ./examples/math-7b/train_two_nodes.sh` on the
# head node, after `source ./examples/ray_start.sh` there and `source ./examples/ray_connect.sh` on the
# other node. It is examples/math-7b/train_2nodes.sh (same arguments, environment and --help).
exec sh "$(dirname -- "$0")/train_2nodes.sh" "$@"
