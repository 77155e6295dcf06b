# The browser test of report.html (issue 16): trains a tiny sweep, analyzes it and renders
# DIR/analysis/report.html in Debian's headless Chromium (mk/report-check.py): the screenshot
# must not be blank, the rendered page must hold the headline, every table and every plot.
# Part of `make test`. Included from the Makefile; uses its $(BIN) and build target.
#
#   make report-test                 # installs chromium with apt-get first if it is not on PATH
#   make report-test CHROMIUM=/path/to/chromium

CHROMIUM ?= chromium
REPORT_TEST_DIR ?= target/report-test

.PHONY: report-test chromium

# apt-get update only when the install fails on stale or absent package lists (a fresh CI
# container has none). --no-install-recommends: the only recommendation is chromium-sandbox,
# which the test does not use (it runs as root, so with --no-sandbox).
chromium:
	@command -v $(CHROMIUM) >/dev/null || { \
		echo "installing chromium (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
	}
	@$(CHROMIUM) --version 2>/dev/null

report-test: build chromium
	python3 mk/report-check.py --bin $(BIN) --chromium $(CHROMIUM) --dir $(REPORT_TEST_DIR)
