#!/bin/sh
# serve_table_check.sh MARCONI [SERVE ARGS...]: `marconi serve`'s table has as many columns in its
# header as in every row (columns are separated by 2+ spaces), and no predicted saving (JSON) is
# above 100%.
m=$1
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$m" serve "$@" >"$tmp/table" || { echo "serve failed"; exit 1; }
# The table: from the header line ("policy ...") to the first blank line.
awk -F '  +' '
  /^policy / { header = NF; on = 1; next }
  on && NF == 0 { on = 0 }
  on { rows++; if (NF != header) { print "row has " NF " columns, header " header ": " $0; bad = 1 } }
  END { if (!header || !rows) { print "no table"; bad = 1 } exit bad }' "$tmp/table" || {
  cat "$tmp/table"
  exit 1
}
"$m" serve "$@" --format json >"$tmp/json" || { echo "serve --format json failed"; exit 1; }
awk '/"predicted_time_saved_(line|roofline)"/ {
       v = $2; gsub(",", "", v); n++
       if (v + 0 > 1) { print "saving above 100%: " $0; bad = 1 } }
     END { if (!n) { print "no predicted saving in the JSON"; bad = 1 } exit bad }' "$tmp/json"
