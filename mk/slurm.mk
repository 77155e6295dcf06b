# The real-Slurm test (issue 15): a one-node cluster on this machine from Debian's slurm-wlm
# and munge packages, the quick sweep as a job array through `grokstack slurm --submit`.
# Needs root (slurmd starts the jobs). Included from the Makefile.

.PHONY: slurm-deps slurm-test

slurm-deps:
	@command -v slurmctld >/dev/null && command -v munged >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }

slurm-test: slurm-deps
	CARGO=$(CARGO) tests/slurm/run-test.sh
