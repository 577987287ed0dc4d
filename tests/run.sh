#!/usr/bin/env bash
# The project's test command (README): everything CI checks, runnable on a fresh machine.
#
#   bash tests/run.sh            # all stages
#   FUZZ_SECONDS=0 bash tests/run.sh   # skip the bounded fuzz run
#
# Stages: prerequisites (PyROOT for the fixture generator, emulators, cargo-fuzz) → big fixtures
# generated with real ROOT → one cargo build of every test binary (profile `ci`) → cargo test →
# Python suites → template lint → cargo-lambda packages → bounded fuzz run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
stage() { echo "==> [$(( $(date +%s) - start ))s] $*"; }

py="${PYTHON:-python3}"
stage "prerequisites (Python test deps incl. ROOT 6.40 + PyROOT and Playwright; Chromium; S3/SQS emulators; cargo-fuzz)"
"$py" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
bash localstack/install.sh
# The web UI's browser tests: Chromium from Debian packages (Playwright drives it; its own browser
# download is never used).
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if [[ "${FUZZ_SECONDS:-90}" != 0 ]] && ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi

stage "fixtures > 16 MiB (tests/fixtures/regen.sh --big, written by ROOT)"
if [[ ! -f tests/fixtures/big/big_none.expected.jsonl ]]; then
  PYTHON="$py" bash tests/fixtures/regen.sh --big
fi

stage "build (profile ci: every binary and test binary, once)"
cargo build --profile ci --workspace --bins
cargo test --profile ci --workspace --no-run

stage "cargo test"
log=$(mktemp)
set +e
cargo test --profile ci --workspace --no-fail-fast 2>&1 | tee "$log"
cargostatus=${PIPESTATUS[0]}
set -e
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")

stage "python: cmsdials client, web UI in Chromium, lake readers (DuckDB, Polars, pyarrow, Spark), LocalStack + moto end to end"
pylog=$(mktemp)
set +e
DIALS_BIN="$PWD/target/ci/dials" "$py" -m pytest -q -p no:cacheprovider tests/python 2>&1 | tee "$pylog"
pystatus=${PIPESTATUS[0]}
set -e
# pytest's closing line, e.g. "11 passed, 1 warning in 22.79s" or "2 failed, 9 passed in ...".
pysummary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$pylog" | tail -1 || true)
passed=$((passed + $(echo "$pysummary" | awk '{ for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }')))
failed=$((failed + $(echo "$pysummary" | awk '{ for (i = 1; i < NF; i++) if ($(i+1) ~ /^(failed|error)/) s += $i } END { print s + 0 }')))
if [[ $pystatus -ne 0 || $cargostatus -ne 0 ]] && [[ $failed -eq 0 ]]; then failed=1; fi

stage "sam-template.yaml: cfn-lint + sam validate --lint (infra/validate.sh)"
if bash infra/validate.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

stage "Lambda packages: cargo-lambda build of both functions (infra/package.sh, x86_64, profile ci)"
if DIALS_CARGO_PROFILE=ci bash infra/package.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

if [[ "${FUZZ_SECONDS:-90}" != 0 ]]; then
  stage "fuzz dqmio_open for ${FUZZ_SECONDS:-90}s from the committed seed corpus"
  corpus=$(mktemp -d)
  cp fuzz/corpus/dqmio_open/* "$corpus/"
  # cargo-fuzz needs nightly flags; the one stable toolchain here accepts them with RUSTC_BOOTSTRAP.
  fuzzlog=$(mktemp)
  if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run dqmio_open "$corpus" -- \
      -max_total_time="${FUZZ_SECONDS:-90}" -rss_limit_mb=2048 -malloc_limit_mb=512 -detect_leaks=0 -print_final_stats=1) >"$fuzzlog" 2>&1; then
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$fuzzlog" || true
    passed=$((passed + 1))
  else
    tail -40 "$fuzzlog"
    echo "fuzzing found a failure (see fuzz/artifacts)"
    failed=$((failed + 1))
  fi
fi
stage "done"
echo "tests: ${passed} passed, ${failed} failed"
test "$failed" -eq 0
