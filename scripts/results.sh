#!/usr/bin/env bash
# Regenerates docs/results.md and docs/results/*.svg from the real data in ../shared/data:
# builds the traces, runs the paper's sweeps with every system, and tabulates them next to the
# paper's headline figures. Takes a few minutes on 2 cores.
#   DATA=../shared/data OUT=docs bash scripts/results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
DOCS=${OUT:-docs}
M=./build/marconi
TOK="$DATA/tokenizer/llama2.model"
[ -f "$TOK" ] || { echo "results: $TOK not found (the shared data is needed)" >&2; exit 2; }
if [ ! -x "$M" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)"
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rm -rf "$DOCS/results"
mkdir -p "$DOCS/results"
RESULTS_ABS=$(cd "$DOCS/results" && pwd)
M_ABS="$PWD/$M"

echo "== building traces" >&2
$M trace build "$DATA/chat/sharegpt.jsonl.zst" --workload chat --min-turns 5 --sessions 100 \
  --tokenizer "$TOK" -o "$T/sharegpt.jsonl.zst" >&2
for art in 5 7.5 10; do
  $M trace build "$DATA/agent/swe-agent.jsonl.zst" --workload agent --sessions 100 --art "$art" \
    --tokenizer "$TOK" -o "$T/swe-art$art.jsonl.zst" >&2
done
$M trace build "$DATA/docqa/leval-shared.jsonl.zst" --workload docqa --sessions 45 --art 2 \
  --tokenizer "$TOK" -o "$T/docqa.jsonl.zst" >&2
$M trace build "$DATA/sysprompts/system-prompts.jsonl.zst" --workload sysprompt --sessions 200 \
  --queries "$DATA/chat/sharegpt.jsonl.zst" --queries-per-prompt 5 --sps 2 \
  --tokenizer "$TOK" -o "$T/sysprompt.jsonl.zst" >&2

echo "== sweeps" >&2
SYSTEMS=vanilla,vllm+,sglang+,marconi,marconi-oneshot,oracle
$M sweep --trace "$T/sharegpt.jsonl.zst" --capacities 1GB,2GB,4GB,6GB,8GB,10GB \
  --sps 0.25,1,5,10 --systems $SYSTEMS -o "$T/sharegpt" >&2
for art in 5 7.5 10; do
  $M sweep --trace "$T/swe-art$art.jsonl.zst" --capacities 40GB,60GB,80GB,100GB \
    --sps 1,10 --systems $SYSTEMS -o "$T/swe-art$art" >&2
done
$M sweep --trace "$T/docqa.jsonl.zst" --capacities 2GB,5GB,10GB,20GB --systems $SYSTEMS \
  -o "$T/docqa" >&2
$M sweep --trace "$T/sysprompt.jsonl.zst" --capacities 1GB,2GB,5GB,10GB --systems $SYSTEMS \
  -o "$T/sysprompt" >&2
# Today's engines against Marconi (issue 11), on a model the engines serve (Nemotron-H 8B:
# Mamba2 + 4 attention layers), with Marconi's eviction inside two engines' admission.
ENGINES=vanilla,llamacpp,trtllm,vllm,vllm-all,sglang-nobuffer,sglang,sglang+,marconi,sparse
ENGINES=$ENGINES,vllm-marconi,sglang-marconi
EM=nemotron-h-8b
engine_sweep() {  # $1 = trace name, $2 = capacities, $3 = sessions/s (empty: as built)
  local t=$1 caps=$2 sps=${3:+--sps $3}
  $M sweep --trace "$T/$t.jsonl.zst" --models $EM --capacities "$caps" $sps \
    --systems $ENGINES --leave-last-token -o "$T/engines-$t" >&2
  # TensorRT-LLM snapshots nothing by default; the same engine with a 256-token interval.
  $M sweep --trace "$T/$t.jsonl.zst" --models $EM --capacities "$caps" $sps \
    --systems trtllm --set trtllm.snapshot_interval=256 -o "$T/engines-$t-trt256" >&2
  # llama.cpp's prompt cache lives in host RAM (8 GiB by default), outside --capacity; the same
  # engine with a prompt cache of the capacity's size.
  for c in ${caps//,/ }; do
    $M sweep --trace "$T/$t.jsonl.zst" --models $EM --capacities "$c" $sps --systems llamacpp \
      --set "llamacpp.cache_ram_mib=$(( ${c%GB} * 1000000000 / 1048576 ))" \
      -o "$T/engines-$t-llama$c" >&2
  done
}
engine_sweep sharegpt 1GB,4GB,10GB 1
engine_sweep swe-art7.5 10GB,40GB,80GB 10
engine_sweep docqa 2GB,5GB,20GB ""
engine_sweep sysprompt 1GB,5GB,10GB ""
# Load (issue 12): the serving model (docs/serving.md: one H100-80GB, paper-7b, continuous
# batching, one memory budget shared by running requests and the cache) against the session
# arrival rate, today's engines (their own pools and rules under load) beside the paper's
# baselines and Marconi; then four replicas behind each router.
LOAD=vanilla,llamacpp,trtllm,vllm,sglang,vllm+,sglang+,marconi
$M sweep --serving --trace "$T/swe-art7.5.jsonl.zst" --sps 0.02,0.05,0.1,0.2,0.5,1 --closed-loop \
  --systems $LOAD -o "$T/load-swe-closed" >&2
$M sweep --serving --trace "$T/swe-art7.5.jsonl.zst" --sps 0.02,0.05,0.1,0.2,0.5 \
  --systems $LOAD -o "$T/load-swe-open" >&2
$M sweep --serving --trace "$T/sharegpt.jsonl.zst" --sps 1,10,100,1000 --systems $LOAD \
  -o "$T/load-sharegpt" >&2
$M sweep --serving --trace "$T/swe-art7.5.jsonl.zst" --sps 0.5 --replicas 4 --router all \
  --systems sglang,sglang+,marconi -o "$T/route-swe-open" >&2
$M sweep --serving --trace "$T/swe-art7.5.jsonl.zst" --sps 10 --closed-loop --replicas 4 \
  --router all --systems sglang,sglang+,marconi -o "$T/route-swe-closed" >&2
for l in swe-closed swe-open sharegpt; do
  cp "$T/load-$l/ttft_p95_vs_sps_paper-7b_H100-80GB.svg" "$DOCS/results/load_${l}_ttft_p95.svg"
done
# Run from $T with relative names: the plots' titles name the trace, and must not name the
# temporary directory (or every regeneration would change them).
(cd "$T" && "$M_ABS" place --trace docqa.jsonl.zst --budgets 1,2,4,8 --format csv \
  -o place-docqa.csv --svg "$RESULTS_ABS/place_docqa.svg")
(cd "$T" && "$M_ABS" place --trace sysprompt.jsonl.zst --budgets 1,2,4,8 --format csv \
  -o place-sysprompt.csv --svg "$RESULTS_ABS/place_sysprompt.svg")
for plot in hit_rate_vs_capacity marconi_win ttft_cdf; do
  cp "$T/sharegpt/${plot}_paper-7b_sps1.svg" "$DOCS/results/"
  cp "$T/swe-art7.5/${plot}_paper-7b_sps10.svg" "$DOCS/results/swe-art7.5_${plot}_paper-7b_sps10.svg"
done

# Tables: token hit rate per system for every (arrival rate, capacity), and the headline ratios.
# Columns are found by their header names, so that new columns in sweep.csv change nothing here.
COLS='FNR == 1 { for (i = 1; i <= NF; ++i) col[$i] = i; next }'
table() {  # $1 = sweep.csv
  awk -F, "$COLS"'{
      key = $col["sessions_per_second"] "," $col["capacity_bytes"]
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      hit[key, $col["system"]] = $col["token_hit_rate"]; p95[key, $col["system"]] = $col["ttft_ms_p95"]
    }
    END {
      print "| sessions/s | cache | vanilla | vLLM+ | SGLang+ | Marconi | Marconi one-shot | oracle | Marconi / vLLM+ | Marconi vs SGLang+ | one-shot vs SGLang+ | P95 TTFT vs no cache |"
      print "|---|---|---|---|---|---|---|---|---|---|---|---|"
      for (i = 1; i <= n; ++i) {
        k = order[i]; split(k, f, ",")
        ratio = hit[k, "vllm+"] > 0 ? sprintf("%.1fx", hit[k, "marconi"] / hit[k, "vllm+"]) : "-"
        win = hit[k, "sglang+"] > 0 ? sprintf("%+.1f%%", 100 * (hit[k, "marconi"] / hit[k, "sglang+"] - 1)) : "-"
        rwin = hit[k, "sglang+"] > 0 ? sprintf("%+.1f%%", 100 * (hit[k, "marconi-oneshot"] / hit[k, "sglang+"] - 1)) : "-"
        ttft = p95[k, "vanilla"] > 0 ? sprintf("%+.1f%%", 100 * (p95[k, "marconi"] / p95[k, "vanilla"] - 1)) : "-"
        if (f[1] == 0) f[1] = "as built"
        printf "| %s | %.0f GB | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %s | %s | %s | %s |\n", f[1], f[2] / 1e9,
          100 * hit[k, "vanilla"], 100 * hit[k, "vllm+"], 100 * hit[k, "sglang+"], 100 * hit[k, "marconi"],
          100 * hit[k, "marconi-oneshot"], 100 * hit[k, "oracle"], ratio, win, rwin, ttft
      }
    }' "$1"
}
engine_table() {  # $1 = the engines' sweep.csv, then LABEL=sweep.csv of one system each
  local main=$1
  shift
  awk -F, -v systems="$ENGINES" -v extra="$*" "$COLS"'
    BEGIN {
      n_extra = split(extra, pairs, " ")
      for (i = 1; i <= n_extra; ++i) { split(pairs[i], kv, "="); label[kv[2]] = kv[1]; labels[i] = kv[1] }
    }
    {
      key = $col["capacity_bytes"]
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      name = (FILENAME in label) ? label[FILENAME] : $col["system"]
      hit[key, name] = $col["token_hit_rate"]
      lost[key, name] = $col["input_tokens"] > 0 ? $col["tokens_lost_no_state"] / $col["input_tokens"] : 0
    }
    END {
      m = split(systems, s, ",")
      for (i = 1; i <= n_extra; ++i) { if (!(labels[i] in named)) { named[labels[i]] = 1; s[++m] = labels[i] } }
      header = "| cache |"; rule = "|---|"
      for (j = 1; j <= m; ++j) { header = header " " s[j] " |"; rule = rule "---|" }
      print header; print rule
      for (i = 1; i <= n; ++i) {
        k = order[i]; line = sprintf("| %.0f GB |", k / 1e9)
        for (j = 1; j <= m; ++j) {
          if (!((k, s[j]) in hit)) { line = line " - |"; continue }
          cell = sprintf("%.1f%%", 100 * hit[k, s[j]])
          if (lost[k, s[j]] >= 0.0005) cell = cell sprintf(" (-%.1f)", 100 * lost[k, s[j]])
          line = line " " cell " |"
        }
        print line
      }
    }' "$main" "${@#*=}"
}
load_table() {  # $1 = serving.csv: TTFT p50 / p95 and goodput per system against the rate
  awk -F, -v systems="$LOAD" "$COLS"'{
      key = $col["sessions_per_second"]
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      s = $col["system"]
      cell[key, s] = sprintf("%s / %s s, %.2f/s", secs($col["ttft_ms_p50"]), secs($col["ttft_ms_p95"]), $col["goodput_req_s"])
      if ($col["ttft_ms_p95"] <= 2000 && key + 0 > knee[s]) knee[s] = key + 0
    }
    function secs(ms) { return ms < 10000 ? sprintf("%.2f", ms / 1000) : sprintf("%.0f", ms / 1000) }
    END {
      m = split(systems, sys, ",")
      header = "| sessions/s |"; rule = "|---|"; last = "| highest rate with TTFT p95 <= 2 s |"
      for (j = 1; j <= m; ++j) {
        header = header " " sys[j] " |"; rule = rule "---|"
        last = last " " ((sys[j] in knee) ? knee[sys[j]] : "none") " |"
      }
      print header; print rule
      for (i = 1; i <= n; ++i) {
        line = "| " order[i] " |"
        for (j = 1; j <= m; ++j) line = line " " cell[order[i], sys[j]] " |"
        print line
      }
      print last
    }' "$1"
}
route_table() {  # $1 = serving.csv with every router
  awk -F, "$COLS"'{
      printf "| %s | %s | %.1f%% | %.2f s | %.2f s | %.2f s | %.3f/s | %.1f%% | %.0f%% |\n", $col["system"], $col["router"],
        100 * $col["token_hit_rate"], $col["ttft_ms_p50"] / 1000, $col["ttft_ms_p95"] / 1000,
        $col["queue_ms_p95"] / 1000, $col["goodput_req_s"], 100 * $col["slo_attainment"],
        100 * $col["busiest_replica_share"]
    }' "$1"
}
headline() {  # $1 = sweep.csv(s): mean Marconi/vLLM+, P95 of the win over SGLang+, best P95 TTFT cut
  awk -F, "$COLS"'{
      key = FILENAME "," $col["model"] "," $col["capacity_bytes"] "," $col["sessions_per_second"]
      hit[key, $col["system"]] = $col["token_hit_rate"]; p95[key, $col["system"]] = $col["ttft_ms_p95"]
      keys[key] = 1
    }
    END {
      for (k in keys) {
        if (hit[k, "vllm+"] > 0) { sum += hit[k, "marconi"] / hit[k, "vllm+"]; n++ }
        if (hit[k, "sglang+"] > 0) {
          wins[++m] = 100 * (hit[k, "marconi"] / hit[k, "sglang+"] - 1)
          rwins[m] = 100 * (hit[k, "marconi-oneshot"] / hit[k, "sglang+"] - 1)
        }
        cut = 100 * (1 - p95[k, "marconi"] / p95[k, "vanilla"]); if (cut > best) best = cut
      }
      for (i = 2; i <= m; ++i) {  # insertion sorts: mawk has no asort
        v = wins[i]; j = i - 1
        while (j >= 1 && wins[j] > v) { wins[j + 1] = wins[j]; j-- }
        wins[j + 1] = v
        v = rwins[i]; j = i - 1
        while (j >= 1 && rwins[j] > v) { rwins[j + 1] = rwins[j]; j-- }
        rwins[j + 1] = v
      }
      idx = int(0.95 * (m - 1)) + 1
      printf "Marconi / vLLM+ token hit rate, mean over configurations: **%.1fx**; ", sum / n
      printf "P95 of Marconi'"'"'s win over SGLang+: **%+.1f%%** (one-shot tuning: **%+.1f%%**; worst case %+.1f%%, one-shot %+.1f%%); ", wins[idx], rwins[idx], wins[1], rwins[1]
      printf "largest P95 TTFT reduction against no cache: **%.1f%%**.\n", best
    }' "$@"
}

{
  cat <<'HEAD'
# Results on real workloads

Generated by `bash scripts/results.sh` from `../shared/data` (do not edit by hand). Model:
the paper's 7B hybrid (`paper-7b`: 4 attention, 24 SSM, 28 MLP layers, D = 4096, N = 128);
TTFT from the least-squares line through the paper's Jamba-1.5-Mini profile
(17.8 ms + 0.05296 ms/token); systems as in SYSTEM.md section 4 (vLLM+: a state every 32
tokens, LRU; SGLang+: Marconi's admission, LRU over leaves; Marconi: FLOP-aware eviction with
recency in requests as in the authors' simulator, alpha re-tuned online after every window;
Marconi one-shot: alpha tuned once, as in the paper; oracle: best fixed alpha in hindsight).

## Traces

```
HEAD
  for t in sharegpt swe-art7.5 docqa sysprompt; do $M trace stats "$T/$t.jsonl.zst" | sed "s#$T/##"; done
  cat <<'MID'
```

## ShareGPT (100 conversations of >= 5 turns)

MID
  echo "$(headline "$T/sharegpt/sweep.csv")"
  echo
  echo "Paper (ShareGPT): 7.3x over vLLM+; P95 win over SGLang+ 19.0%; P95 TTFT up to 73.2% lower."
  echo
  table "$T/sharegpt/sweep.csv"
  echo
  echo "![hit rate](results/hit_rate_vs_capacity_paper-7b_sps1.svg)"
  echo "![win](results/marconi_win_paper-7b_sps1.svg)"
  echo "![TTFT](results/ttft_cdf_paper-7b_sps1.svg)"
  echo
  echo "## SWE-bench agent runs (100 runs of mini-swe-agent, exponential gaps)"
  echo
  echo "$(headline "$T"/swe-art*/sweep.csv)"
  echo
  echo "Paper (SWE-bench): 34.4x over vLLM+; P95 win over SGLang+ 219.7%; P95 TTFT up to 46.8% lower;"
  echo "at 80 GB, 10 sessions/s, 7.5 s gaps: SGLang+ 16.4%, Marconi 32.7%."
  for art in 5 7.5 10; do
    echo
    echo "### mean gap between steps $art s"
    echo
    table "$T/swe-art$art/sweep.csv"
  done
  echo
  echo "![hit rate](results/swe-art7.5_hit_rate_vs_capacity_paper-7b_sps10.svg)"
  echo "![win](results/swe-art7.5_marconi_win_paper-7b_sps10.svg)"
  echo "![TTFT](results/swe-art7.5_ttft_cdf_paper-7b_sps10.svg)"
  echo
  echo "## Doc-QA and system prompts through the simulator"
  echo
  echo "The same systems on the L-Eval documents (45 documents, their questions arriving 2 s apart"
  echo "on average; no output) and on system prompts with first-turn user queries (200 prompts,"
  echo "5 queries each, 2 sessions/s). The paper did not evaluate these workloads."
  for t in docqa sysprompt; do
    echo
    echo "### $t"
    echo
    echo "$(headline "$T/$t/sweep.csv")"
    echo
    table "$T/$t/sweep.csv"
  done
  echo
  echo "## Today's engines vs Marconi"
  echo
  echo "Emulations of the prefix caches that serving engines ship for hybrid models (rules, sources"
  echo "and readings in \`docs/engines.md\`), as shipped, on Nemotron-H 8B (\`$EM\`), beside the"
  echo "paper's SGLang+ baseline, Marconi, sparse placement (\`sparse\`), and Marconi's eviction inside"
  echo "vLLM's and SGLang's own admission and granularity (\`vllm-marconi\`, \`sglang-marconi\`: what"
  echo "SGLang PR #21862 proposed; alpha the grid's best in hindsight, so never below the engine)."
  echo "Every system leaves the last input token to compute, as engines do (\`--leave-last-token\`)."
  echo "Each cell is the token hit rate; in brackets, the input tokens (%) whose KV was cached and"
  echo "matched but recomputed for want of a state there (\`tokens_lost_no_state\`), when at least"
  echo "0.05%. \`trtllm\` is TensorRT-LLM as shipped (no snapshot interval: no recurrent reuse);"
  echo "\`trtllm-256\` sets a 256-token interval. \`llamacpp\` keeps its prompt cache in 8 GiB of"
  echo "host RAM, outside the capacity (one slot, whose context the capacity sizes), so its column"
  echo "hardly moves with the capacity; \`llamacpp-ram\` sizes that prompt cache to the capacity."
  for t in sharegpt swe-art7.5 docqa sysprompt; do
    echo
    echo "### $t"
    echo
    extra="trtllm-256=$T/engines-$t-trt256/sweep.csv"
    for f in "$T"/engines-"$t"-llama*/sweep.csv; do extra="$extra llamacpp-ram=$f"; done
    engine_table "$T/engines-$t/sweep.csv" $extra
  done
  cat docs/results-engines.md
  echo
  echo "## Load: TTFT and goodput against the arrival rate (issue 12)"
  echo
  echo "The serving model (\`docs/serving.md\`): one H100-80GB serving \`paper-7b\` with continuous"
  echo "batching (256 running requests at most, 8,192 tokens per step, 2,048-token prefill chunks), the"
  echo "memory left after the weights (59.1 GB) shared by running requests and the cache, SLO TTFT <= 2 s"
  echo "and TPOT <= 100 ms. Each cell: TTFT p50 / p95 (seconds) and goodput (requests per second that"
  echo "meet the SLO). Open loop: every request arrives at its (re-timed) trace time. Closed loop: a"
  echo "session's next turn arrives its trace gap after the previous turn finished (an agent waits"
  echo "for its answer). Today's engines (\`llamacpp\`, \`trtllm\`, \`vllm\`, \`sglang\`, their defaults) hold"
  echo "their running requests in their own pools by their own rules (\`docs/serving.md\`, \"Engines under"
  echo "load\"): llama.cpp serves one request at a time in its one slot, SGLang keeps three fp32 state"
  echo "slots per running request, vLLM holds blocks from its one pool. \`marconi sweep --serving\`"
  echo "(\`serving.csv\`)."
  for l in swe-closed swe-open sharegpt; do
    case $l in
      swe-closed) title="SWE-agent (swe-art7.5), closed loop" ;;
      swe-open) title="SWE-agent (swe-art7.5), open loop" ;;
      sharegpt) title="ShareGPT, open loop" ;;
    esac
    echo
    echo "### $title"
    echo
    load_table "$T/load-$l/serving.csv"
    echo
    echo "![TTFT p95 against the arrival rate](results/load_${l}_ttft_p95.svg)"
  done
  echo
  echo "### Routing: four replicas"
  echo
  echo "Four H100-80GB replicas, each with its own cache and memory budget, behind each router"
  echo "(\`--replicas 4 --router all\`): \`round-robin\`; \`least-loaded\` (fewest outstanding requests);"
  echo "\`session\` (affinity: a session stays on its first request's replica); \`prefix\` (the"
  echo "longest cached attention prefix, as NVIDIA Dynamo and llm-d); \`state\` (the longest prefix"
  echo "with a stored state); \`prefix\` and \`state\` break only exact ties by load. \`prefix-load\` and"
  echo "\`state-load\` weigh the overlap against the load with NVIDIA Dynamo's cost (prefill queued plus"
  echo "the request's past its overlap, plus active KV; weight 1), the overlap being the cached"
  echo "attention prefix or the reusable one. Busiest replica: the share of the requests served by"
  echo "the replica that served the most (25%: even)."
  for l in open closed; do
    echo
    if [ $l = open ]; then echo "SWE-agent (swe-art7.5), open loop, 0.5 sessions/s:"; else echo "SWE-agent (swe-art7.5), closed loop, 10 sessions/s:"; fi
    echo
    echo "| system | router | tok hit | TTFT p50 | TTFT p95 | queue p95 | goodput | SLO met | busiest replica |"
    echo "|---|---|---|---|---|---|---|---|---|"
    route_table "$T/route-swe-$l/serving.csv"
  done
  cat docs/results-load.md
  echo
  echo "## Sparse checkpoint placement (issue 5) on doc-QA and system prompts"
  echo
  echo "Checkpoints admitted per request (last token included) against prefill tokens saved;"
  echo "unbounded cache, 64-token chunks."
  for t in docqa sysprompt; do
    echo
    echo "### $t"
    echo
    echo "| strategy | budget / block | checkpoints per request | prefill saved |"
    echo "|---|---|---|---|"
    awk -F, 'NR > 1 { printf "| %s | %s | %.2f | %.1f%% |\n", $1, $2, $8, 100 * $9 }' "$T/place-$t.csv"
    echo
    echo "![placement](results/place_$t.svg)"
  done
  cat docs/results-discussion.md
} > "$DOCS/results.md"
echo "wrote $DOCS/results.md" >&2
