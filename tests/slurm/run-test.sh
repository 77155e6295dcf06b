#!/usr/bin/env bash
# `make slurm-test`: start a one-node Slurm, run tests/slurm.rs against it, stop the cluster,
# and fail if any process it started is still alive.
set -euo pipefail
cd "$(dirname "$0")/../.."
state=$(mktemp -d /tmp/grokstack-slurm.XXXXXX)
# munged (user munge) keeps its log and socket below it.
chmod 755 "$state"
stop() {
    tests/slurm/cluster.sh stop "$state"
    if pgrep -af "$state" >&2; then
        echo "slurm-test: processes of the test cluster outlived it (above)" >&2
        exit 1
    fi
    rm -rf "$state"
}
trap stop EXIT
SLURM_CONF=$(tests/slurm/cluster.sh start "$state")
export SLURM_CONF
${CARGO:-cargo} test --release --workspace --test slurm -- --ignored --nocapture
