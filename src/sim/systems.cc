#include "sim/systems.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include "sim/engines/llamacpp.h"
#include "sim/engines/sglang.h"
#include "sim/engines/trtllm.h"
#include "sim/engines/vllm.h"

namespace marconi::sim {
namespace {

constexpr SystemParam kBlockParams[] = {
    {"block_size", 32, 1, 1 << 20, true, "tokens between stored states"},
};
constexpr SystemParam kSparseParams[] = {
    {"budget", 2, 0, 4096, true, "placed states per cached entry (M)"},
    {"chunk_tokens", 64, 1, 1 << 20, true, "placement granularity in tokens"},
};
// SGLang's defaults (docs/engines.md); the ranges are what the emulation accepts.
constexpr SystemParam kSglangChunk = {
    "chunk_size",
    0,
    0,
    1 << 20,
    true,
    "mamba cache chunk size C, the state grid (0 = from the model: 64 GDN/Mamba1, 256 Mamba2)"};
constexpr SystemParam kSglangTrack = {
    "track_interval", 256,  1,
    1 << 20,          true, "--mamba-track-interval: decode tokens between tracks"};
constexpr SystemParam kSglangPrefill = {
    "chunked_prefill_size",
    8192,
    0,
    1 << 24,
    true,
    "--chunked-prefill-size: tokens per prefill extend (0 = no chunking)"};
constexpr SystemParam kSglangRatio = {
    "mamba_full_memory_ratio",
    0.9,
    0.01,
    100,
    false,
    "--mamba-full-memory-ratio r: the state pool gets r/(1+r) of the capacity"};
constexpr SystemParam kSglangDtype = {
    "ssm_dtype_bytes", 4, 1, 8, true, "--mamba-ssm-dtype in bytes (float32 = 4)"};
constexpr SystemParam kSglangSlots = {
    "max_mamba_cache_size",
    0,
    0,
    1 << 30,
    true,
    "--max-mamba-cache-size: state slots (0 = derived from the capacity)"};
constexpr SystemParam kSglangParams[] = {kSglangChunk, kSglangTrack, kSglangPrefill,
                                         kSglangRatio, kSglangDtype, kSglangSlots};
constexpr SystemParam kSglangNoBufferParams[] = {kSglangPrefill, kSglangRatio, kSglangDtype,
                                                 kSglangSlots};
// Marconi's eviction inside an engine: the weight of FLOPs saved per byte against recency.
constexpr SystemParam kEngineAlpha = {
    "alpha",
    -1,
    -1,
    1e6,
    false,
    "weight of FLOPs saved per byte against recency; -1 = the best fixed alpha of the tuner's "
    "grid "
    "in hindsight (an upper bound on what tuning it buys), else fixed"};
constexpr SystemParam kSglangMarconiParams[] = {
    kSglangChunk, kSglangTrack, kSglangPrefill, kSglangRatio,
    kSglangDtype, kSglangSlots, kEngineAlpha,
};

constexpr SystemParam kTrtllmParams[] = {
    {"tokens_per_block", 32, 1, 4096, true, "tokens per attention page (KvCacheConfig)"},
    {"snapshot_interval", 0, 0, 1 << 30, true,
     "periodic_snapshot_interval; 0 = off, the default, so no recurrent reuse at all"},
    {"offset_from_start", -1, -1, 1 << 30, true,
     "one additional_snapshot_offsets_from_start entry (tokens); -1 = none"},
    {"offset_from_end", -1, -1, 1 << 30, true,
     "one additional_snapshot_offsets_from_end entry (0 = the prompt end); -1 = none"},
    {"branch_snapshot", 0, 0, 1, true, "enable_branch_snapshot (0/1)"},
    {"max_seq_len", 8192, 2, 1 << 30, true,
     "sizes the pool split: a typical request holds max_seq_len/2 tokens of KV"},
};
constexpr SystemParam kLlamacppParams[] = {
    {"parallel", 1, 1, 256, true, "--parallel: slots"},
    {"ctx_checkpoints", 32, 0, 1 << 20, true, "--ctx-checkpoints: checkpoints per slot"},
    {"checkpoint_min_step", 8192, 0, 1 << 30, true, "--checkpoint-min-step (tokens)"},
    {"n_batch", 2048, 1, 1 << 20, true, "-b: logical batch (tokens)"},
    {"n_ubatch", 512, 1, 1 << 20, true, "-ub: physical batch (tokens)"},
    {"cache_ram_mib", 8192, -1, 1 << 30, true, "--cache-ram (MiB): 0 = off, -1 = no limit"},
    {"slot_prompt_similarity", 0.10, 0, 1, false, "--slot-prompt-similarity"},
};

// vLLM v1's defaults (vllm/config/cache.py, vllm/config/scheduler.py); docs/engines.md.
constexpr SystemParam kVllmParams[] = {
    {"block_size", 0, 0, 65536, true,
     "--block-size: kernel block K = max(16, it), 0 = unset; B is raised from K until one "
     "attention page holds a state"},
    {"retention_interval", 0, 0, 1 << 30, true,
     "--prefix-cache-retention-interval: 0 = states kept only at the replay boundary and the "
     "junction; > 0 (a multiple of B) also one every that many tokens"},
    {"max_num_batched_tokens", 8192, 1, 1 << 24, true, "chunked-prefill token budget per step"},
};
constexpr SystemParam kVllmAllParams[] = {
    {"block_size", 0, 0, 65536, true,
     "--block-size: kernel block K = max(16, it), 0 = unset; B is a multiple of "
     "lcm(mamba_chunk_size, K) holding a state"},
    {"mamba_chunk_size", 0, 0, 65536, true,
     "the model's mamba chunk size; 0 = 64 for GatedDeltaNet models, else 256"},
    {"max_num_batched_tokens", 8192, 1, 1 << 24, true, "chunked-prefill token budget per step"},
};
constexpr SystemParam kVllmMarconiParams[] = {
    {"block_size", 0, 0, 65536, true, "as vllm's"},
    {"retention_interval", 0, 0, 1 << 30, true, "as vllm's"},
    {"max_num_batched_tokens", 8192, 1, 1 << 24, true, "chunked-prefill token budget per step"},
    kEngineAlpha,
};

constexpr SystemSpec kSystems[] = {
    // No cache.
    {SystemKind::kVanilla,
     "vanilla",
     "no cache: every prefill from scratch",
     Admission::kNone,
     Eviction::kNone,
     Tuning::kNone,
     false,
     {}},
    // Today's engines (docs/engines.md), as shipped; their variants on request.
    {SystemKind::kLlamacpp, "llamacpp",
     "llama.cpp server: slots with context checkpoints near the prompt end, RAM prompt cache",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kLlamacppParams, MakeLlamacpp},
    {SystemKind::kTrtllm, "trtllm",
     "TensorRT-LLM MambaHybridCacheManagerV2: states at snapshot points only (none by default)",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kTrtllmParams, MakeTrtllm},
    {SystemKind::kVllm, "vllm",
     "vLLM v1, mamba_cache_mode align: states at step-ending block boundaries, kept at the "
     "replay boundary and the shared-prefix junction; one LRU block pool",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kVllmParams, MakeVllmEngine},
    {SystemKind::kVllmAll, "vllm-all",
     "vLLM v1, mamba_cache_mode all: a state at every block boundary; one LRU block pool",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kVllmAllParams, MakeVllmAllEngine,
     false},
    {SystemKind::kSglang, "sglang",
     "SGLang's Mamba radix cache, extra_buffer: states on the chunk grid, decode tracks, two LRU "
     "lists",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kSglangParams, MakeSglang},
    {SystemKind::kSglangNoBuffer, "sglang-nobuffer",
     "SGLang, no_buffer: a state at each chunk end and at finish, no branch or decode states",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kSglangNoBufferParams,
     MakeSglangNoBuffer, false},
    {SystemKind::kSglangLazy, "sglang-lazy",
     "SGLang, extra_buffer_lazy: decode tracks only when a slot is free after one eviction",
     Admission::kEngine, Eviction::kEngine, Tuning::kNone, false, kSglangParams, MakeSglangLazy,
     false},
    // The paper's baselines.
    {SystemKind::kVllmPlus, "vllm+",
     "the paper's vLLM+ baseline: a state every block_size tokens, LRU over blocks",
     Admission::kBlock, Eviction::kLru, Tuning::kNone, true, kBlockParams},
    {SystemKind::kSglangPlus,
     "sglang+",
     "the paper's SGLang+ baseline: Marconi's admission, LRU over leaves",
     Admission::kJudicious,
     Eviction::kLru,
     Tuning::kNone,
     true,
     {}},
    // Marconi, its ablations and its bound.
    {SystemKind::kMarconi,
     "marconi",
     "Marconi: judicious admission, FLOP-aware eviction, alpha re-tuned after every window",
     Admission::kJudicious,
     Eviction::kFlopAware,
     Tuning::kOnline,
     false,
     {}},
    {SystemKind::kMarconiOneShot,
     "marconi-oneshot",
     "Marconi with alpha tuned once, as in the paper",
     Admission::kJudicious,
     Eviction::kFlopAware,
     Tuning::kOneShot,
     true,
     {},
     nullptr,
     false},
    {SystemKind::kOracle,
     "oracle",
     "Marconi with the best fixed alpha of the grid in hindsight (an upper bound)",
     Admission::kJudicious,
     Eviction::kFlopAware,
     Tuning::kHindsight,
     false,
     {}},
    {SystemKind::kSparse, "sparse",
     "sparse placement (relative DP) with FLOP-aware eviction and the online tuner",
     Admission::kSparse, Eviction::kFlopAware, Tuning::kOnline, true, kSparseParams, nullptr,
     false},
    // Marconi's eviction inside an engine's admission and granularity.
    {SystemKind::kVllmMarconi, "vllm-marconi",
     "vllm with Marconi's FLOP-aware eviction: the free queue's state block chosen by recency + "
     "alpha * FLOPs saved per byte",
     Admission::kEngine, Eviction::kEngine, Tuning::kHindsight, false, kVllmMarconiParams,
     MakeVllmMarconiEngine, false},
    {SystemKind::kSglangMarconi, "sglang-marconi",
     "sglang with Marconi's FLOP-aware eviction order in both lists (SGLang PR #21862)",
     Admission::kEngine, Eviction::kEngine, Tuning::kHindsight, false, kSglangMarconiParams,
     MakeSglangMarconi, false},
};

const SystemParam* FindParam(const SystemSpec& spec, std::string_view name) {
  for (const SystemParam& p : spec.params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const SystemSpec* FindSystem(std::string_view name) {
  for (const SystemSpec& s : kSystems) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace

std::span<const SystemSpec> Systems() { return kSystems; }

const SystemSpec& SpecOf(SystemKind kind) {
  for (const SystemSpec& s : kSystems) {
    if (s.kind == kind) return s;
  }
  return kSystems[0];  // unreachable: every kind has a row (tested)
}

const char* SystemName(SystemKind kind) { return SpecOf(kind).name.data(); }

std::string SystemNames() {
  std::string out;
  for (const SystemSpec& s : kSystems) {
    if (!out.empty()) out += ", ";
    out += s.name;
  }
  return out;
}

std::string DefaultSystemNames() {
  std::string out;
  for (const SystemSpec& s : kSystems) {
    if (!s.shown_by_default) continue;
    if (!out.empty()) out += ",";
    out += s.name;
  }
  return out;
}

bool IsTuned(SystemKind kind) {
  const Tuning t = SpecOf(kind).tuning;
  return t == Tuning::kOnline || t == Tuning::kOneShot;
}

Result<std::vector<SystemKind>> ParseSystems(const std::string& list) {
  std::vector<SystemKind> out;
  if (list == "all") {
    for (const SystemSpec& s : kSystems) out.push_back(s.kind);
    return out;
  }
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    const SystemSpec* s = FindSystem(item);
    if (s == nullptr) {
      return Status::InvalidArgument("unknown system '" + item + "' (systems: " + SystemNames() +
                                     ", or all)");
    }
    if (std::find(out.begin(), out.end(), s->kind) == out.end()) out.push_back(s->kind);
  }
  if (out.empty()) return Status::InvalidArgument("no system given");
  return out;
}

Result<SystemKind> ParseSet(const std::string& item, SystemOverrides* overrides) {
  const size_t eq = item.find('=');
  const size_t dot = item.substr(0, eq).rfind('.');
  if (eq == std::string::npos || dot == std::string::npos) {
    return Status::InvalidArgument("--set '" + item + "': expected SYSTEM.PARAM=VALUE");
  }
  const std::string system = item.substr(0, dot), name = item.substr(dot + 1, eq - dot - 1);
  const std::string value = item.substr(eq + 1);
  const SystemSpec* spec = FindSystem(system);
  if (spec == nullptr) {
    return Status::InvalidArgument("--set '" + item + "': unknown system '" + system +
                                   "' (systems: " + SystemNames() + ")");
  }
  const SystemParam* param = FindParam(*spec, name);
  if (param == nullptr) {
    std::string names;
    for (const SystemParam& p : spec->params)
      names += (names.empty() ? "" : ", ") + std::string(p.name);
    return Status::InvalidArgument("--set '" + item + "': " + system + " has no parameter '" +
                                   name + "'" +
                                   (names.empty() ? " (it has none)" : " (it has: " + names + ")"));
  }
  double v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(v)) {
    return Status::InvalidArgument("--set '" + item + "': '" + value + "' is not a number");
  }
  if (v < param->min || v > param->max || (param->integer && v != std::floor(v))) {
    std::ostringstream range;
    range << (param->integer ? "a whole number in [" : "a number in [") << param->min << ", "
          << param->max << "]";
    return Status::InvalidArgument("--set '" + item + "': " + name + " must be " + range.str());
  }
  (*overrides)[system + "." + name] = v;
  return spec->kind;
}

double Param(SystemKind kind, std::string_view param, const SystemOverrides& overrides) {
  const SystemSpec& spec = SpecOf(kind);
  auto it = overrides.find(std::string(spec.name) + "." + std::string(param));
  if (it != overrides.end()) return it->second;
  const SystemParam* p = FindParam(spec, param);
  return p ? p->default_value : std::numeric_limits<double>::quiet_NaN();
}

std::map<std::string, double> EffectiveParams(SystemKind kind, const SystemOverrides& overrides) {
  std::map<std::string, double> out;
  for (const SystemParam& p : SpecOf(kind).params) {
    out[std::string(p.name)] = Param(kind, p.name, overrides);
  }
  return out;
}

}  // namespace marconi::sim
