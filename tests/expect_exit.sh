#!/bin/sh
# expect_exit.sh CODE PATTERN [--no-stdout] [--no-stderr] -- COMMAND [ARGS...]
# Runs COMMAND and passes when it exits with exactly CODE and its stderr matches the extended
# regular expression PATTERN ('' matches anything). --no-stdout also requires an empty stdout
# (e.g. a bad output path refused before the run printed anything); --no-stderr an empty stderr.
code=$1
pattern=$2
shift 2
no_stdout=0
no_stderr=0
if [ "$1" = "--no-stdout" ]; then
  no_stdout=1
  shift
fi
if [ "$1" = "--no-stderr" ]; then
  no_stderr=1
  shift
fi
[ "$1" = "--" ] && shift
tmp=$(mktemp -d) || exit 1
"$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
fail=0
if [ "$rc" -ne "$code" ]; then
  echo "expected exit code $code, got $rc: $*"
  fail=1
fi
if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$tmp/err"; then
  echo "stderr does not match /$pattern/: $*"
  fail=1
fi
if [ "$no_stdout" -eq 1 ] && [ -s "$tmp/out" ]; then
  echo "expected no stdout: $*"
  fail=1
fi
if [ "$no_stderr" -eq 1 ] && [ -s "$tmp/err" ]; then
  echo "expected no stderr: $*"
  fail=1
fi
if [ "$fail" -ne 0 ]; then
  echo "--- stderr:"; cat "$tmp/err"; echo "--- stdout (head):"; head -5 "$tmp/out"
fi
rm -rf "$tmp"
exit "$fail"
