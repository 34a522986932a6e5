# The workshop's front door. `make` alone lists the targets.

SHELL := /bin/bash
CARGO ?= cargo
# Extra flags for a step's server, e.g. make 02-resp-parser ARGS="--port 7000"
ARGS ?=

ALL_STEPS := 01-tcp-echo 02-resp-parser 03-get-set 04-expiry 05-aof-persistence \
             06-rdb-snapshots 07-pubsub 08-replication 09-graceful-shutdown 10-capstone
# The steps written so far; the rest of ALL_STEPS are still to come.
STEPS := $(wildcard $(ALL_STEPS))

.DEFAULT_GOAL := help
.PHONY: help test lint bench $(ALL_STEPS)

help:
	@echo "Build your own Redis in Rust: one step per folder."
	@echo
	@echo "  make NN-name       build step NN in release mode and run it on 127.0.0.1:6380"
	@echo "                     (ARGS=\"...\" passes flags, e.g. ARGS=\"--port 7000\")"
	@echo "  make diff-NN       show what step NN adds to step NN-1"
	@echo "  make test          run every test of every step"
	@echo "  make lint          rustfmt check and clippy with warnings as errors"
	@echo "  make bench         benchmark every server step against redis-server (step 10)"
	@echo "  make 10-capstone   the same for the newest server step only, SET and GET"
	@echo
	@echo "Steps written so far:"
	@for step in $(STEPS); do echo "  make $$step"; done

# Step 10 is the load generator, not a server: it has its own rule below.
$(filter-out 10-capstone,$(STEPS)):
	$(CARGO) run --release --bin step$@ -- $(ARGS)

$(filter-out $(STEPS) 10-capstone,$(ALL_STEPS)):
	@echo "Step $@ is not written yet: README.md lists the steps that exist." >&2
	@exit 1

# make diff-03: what 03-get-set adds to 02-resp-parser. diff exits 1 when the
# folders differ, which here is the point, so only 2 (trouble) is an error.
diff-%:
	@new=$$(ls -d $*-*/ 2>/dev/null | head -n 1); \
	old=$$(ls -d $$(printf '%02d' $$((10#$* - 1)))-*/ 2>/dev/null | head -n 1); \
	if [ -z "$$new" ] || [ -z "$$old" ]; then \
		echo "usage: make diff-NN, where steps NN and NN-1 both exist (e.g. make diff-02)" >&2; exit 2; \
	fi; \
	diff -ruN --exclude=target $${old}src $${new}src; test $$? -le 1

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The newest server step against redis-server, SET and GET at pipeline 1
# and 16, with step 10's load generator; ARGS go to the generator, e.g.
# ARGS="-n 20000". Results and plots land in target/bench/.
10-capstone:
	@CARGO="$(CARGO)" 10-capstone/bench.sh $(ARGS)

# The same for every server step that exists, plus PING for all of them.
bench:
	@CARGO="$(CARGO)" 10-capstone/bench.sh --all $(ARGS)
