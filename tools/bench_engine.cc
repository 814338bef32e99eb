#include "bench_engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "engine/driver.h"
#include "engine/hybrid_model.h"
#include "sim/synthetic.h"
#include "sim/trace.h"

namespace marconi::tools {
namespace {

struct Args {
  std::string trace;
  int64_t tokens = 1024;
  int repeats = 3;
};

// Best of `repeats` wall-clock seconds of fn().
template <typename F>
double Time(int repeats, F&& fn) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int Run(const Args& a) {
  engine::HybridConfig c;
  c.pattern = "MMMAMMMA";
  c.vocab = 1024;
  c.d_model = 128;
  c.d_ff = 256;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.ssm_heads = 8;
  c.ssm_head_dim = 16;
  c.d_state = 32;
  c.chunk_size = 64;
  const engine::HybridModel model = engine::HybridModel::Create(c).value();
  const ModelSpec spec = engine::SpecOf(model);

  // A workload slice: the longest request of the trace (or of the synthetic doc-QA workload),
  // its tokens folded into the model's vocabulary.
  Result<sim::Trace> trace =
      a.trace.empty() ? Result<sim::Trace>(sim::SyntheticDocQa(4, 1)) : sim::ReadTrace(a.trace);
  if (!trace.ok()) {
    std::fprintf(stderr, "marconi bench engine: %s\n", trace.status().ToString().c_str());
    return 2;
  }
  std::vector<Token> tokens;
  for (const auto& r : trace->requests) {
    if (r.input.size() > tokens.size()) tokens = r.input;
  }
  tokens.resize(std::min<size_t>(tokens.size(), static_cast<size_t>(a.tokens)));
  if (tokens.size() < 2) {
    std::fprintf(stderr, "marconi bench engine: the trace's longest request has < 2 tokens\n");
    return 2;
  }
  for (Token& t : tokens) t = static_cast<Token>(((t % c.vocab) + c.vocab) % c.vocab);
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::printf(
      "reference hybrid model: %s, d_model %lld, fp32; prefill of %lld tokens from %s, "
      "chunked scan (chunk %lld), best of %d\n\n",
      c.pattern.c_str(), static_cast<long long>(c.d_model), static_cast<long long>(n),
      trace->source.c_str(), static_cast<long long>(c.chunk_size), a.repeats);

  const double full = Time(a.repeats, [&] {
    engine::SequenceState s = model.NewSequence();
    (void)model.Prefill(s, tokens, engine::ScanKernel::kChunked);
  });
  const int64_t branch = std::min(n, n / 2 + 17);  // off a chunk boundary: rolled forward
  const std::vector<int64_t> at = {branch};
  const double captured = Time(a.repeats, [&] {
    engine::SequenceState s = model.NewSequence();
    std::vector<engine::Checkpoint> cps;
    (void)model.Prefill(s, tokens, engine::ScanKernel::kChunked, at, &cps);
  });
  const double flops = spec.PrefillFlops(0, n);
  std::printf("full prefill            %9.2f ms   cost model %.3g FLOPs -> %.2f GFLOP/s\n",
              1e3 * full, flops, flops / full / 1e9);
  std::printf("with a state captured   %9.2f ms   overhead %+.2f%% (target < 5%%)\n\n",
              1e3 * captured, 100 * (captured / full - 1));
  std::printf("%-10s %12s %14s %16s\n", "hit", "prefill ms", "time saved", "FLOPs saved (model)");
  int64_t previous = 0;
  for (int pct : {25, 50, 75, 90}) {
    // Hits on chunk boundaries, as a chunked kernel checkpoints them; none below one chunk.
    const int64_t hit = n * pct / 100 / c.chunk_size * c.chunk_size;
    if (hit == 0 || hit == previous) continue;
    previous = hit;
    engine::SequenceState base = model.NewSequence();
    std::vector<engine::Checkpoint> cps;
    const std::vector<int64_t> cap = {hit};
    if (auto r = model.Prefill(base, tokens, engine::ScanKernel::kChunked, cap, &cps); !r.ok()) {
      std::fprintf(stderr, "marconi bench engine: %s\n", r.status().ToString().c_str());
      return 1;
    }
    const double t = Time(a.repeats, [&] {
      engine::SequenceState s = model.Resume(base, cps[0]);
      (void)model.Prefill(s, std::span<const Token>(tokens).subspan(static_cast<size_t>(hit)),
                          engine::ScanKernel::kChunked);
    });
    std::printf("%5lld (%3.0f%%) %11.2f %13.1f%% %15.1f%%\n", static_cast<long long>(hit),
                100.0 * static_cast<double>(hit) / static_cast<double>(n), 1e3 * t,
                100 * (1 - t / full), 100 * spec.FlopsSaved(hit, n) / flops);
  }
  std::printf(
      "\nA hit of h%% of the tokens should cut prefill time by close to the FLOPs it saves; "
      "the last column is what the simulator's cost model predicts.\n");
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app, int* exit_code) {
  auto* bench = app.add_subcommand("bench", "Measurements");
  bench->require_subcommand(1);
  auto a = std::make_shared<Args>();
  auto* eng = bench->add_subcommand(
      "engine", "Reference hybrid model: prefill time with and without hits, capture overhead");
  eng->add_option("--trace", a->trace, "Take the prompt from this trace (default: synthetic)")
      ->check(CLI::ExistingFile);
  eng->add_option("--tokens", a->tokens, "Prompt length")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{64}, int64_t{65536}));
  eng->add_option("--repeats", a->repeats, "Repetitions (best is reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  eng->callback([a, exit_code] { *exit_code = Run(*a); });
}

}  // namespace marconi::tools
