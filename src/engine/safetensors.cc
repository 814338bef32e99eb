// Safetensors reading and writing for the reference hybrid model.
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/hybrid_model.h"
#include "util/read_file.h"

namespace marconi::engine {

std::vector<HybridModel::TensorRef> HybridModel::Tensors() {
  const HybridConfig& c = config_;
  const int64_t d = c.d_model, di = c.ssm_heads * c.ssm_head_dim;
  const int64_t gn = c.n_groups * c.d_state, conv_dim = di + 2 * gn;
  std::vector<TensorRef> t = {{"embedding", {c.vocab, d}, &embedding_},
                              {"final_norm", {d}, &final_norm_}};
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = layers_[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    t.push_back({p + "norm1", {d}, &l.norm1});
    t.push_back({p + "norm2", {d}, &l.norm2});
    if (l.kind == 'A') {
      t.push_back({p + "wq", {c.n_heads * c.head_dim, d}, &l.wq});
      t.push_back({p + "wk", {c.n_kv_heads * c.head_dim, d}, &l.wk});
      t.push_back({p + "wv", {c.n_kv_heads * c.head_dim, d}, &l.wv});
      t.push_back({p + "wo", {d, c.n_heads * c.head_dim}, &l.wo});
    } else {
      t.push_back({p + "in_proj", {2 * di + 2 * gn + c.ssm_heads, d}, &l.in_proj});
      t.push_back({p + "conv_w", {conv_dim, c.d_conv}, &l.conv_w});
      t.push_back({p + "conv_b", {conv_dim}, &l.conv_b});
      t.push_back({p + "dt_bias", {c.ssm_heads}, &l.dt_bias});
      t.push_back({p + "a_log", {c.ssm_heads}, &l.a_log});
      t.push_back({p + "d_skip", {c.ssm_heads}, &l.d_skip});
      t.push_back({p + "gate_norm", {di}, &l.gate_norm});
      t.push_back({p + "out_proj", {d, di}, &l.out_proj});
    }
    t.push_back({p + "w_gate", {c.d_ff, d}, &l.w_gate});
    t.push_back({p + "w_up", {c.d_ff, d}, &l.w_up});
    t.push_back({p + "w_down", {d, c.d_ff}, &l.w_down});
  }
  return t;
}

Status HybridModel::SaveSafetensors(const std::string& path) const {
  // Tensors() only hands out pointers; writing does not modify the model.
  auto refs = const_cast<HybridModel*>(this)->Tensors();
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const TensorRef& t : refs) {
    const uint64_t bytes = t.data->size() * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';  // the format aligns the data to 8 bytes
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError("cannot create '" + path + "'");
  const uint64_t n = text.size();
  out.write(reinterpret_cast<const char*>(&n), 8);  // little-endian on every supported machine
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorRef& t : refs) {
    out.write(reinterpret_cast<const char*>(t.data->data()),
              static_cast<std::streamsize>(t.data->size() * sizeof(float)));
  }
  out.close();
  return out ? Status::Ok() : Status::IoError("cannot write '" + path + "'");
}

Status HybridModel::LoadSafetensors(const std::string& path) {
  Result<std::string> read = internal::ReadWholeFile(path);
  if (!read.ok()) return read.status();
  const std::string& file = *read;
  auto fail = [&](const std::string& what) { return Status::ParseError(path + ": " + what); };
  if (file.size() < 8) return fail("shorter than the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  if (n > file.size() - 8) return fail("header length " + std::to_string(n) + " exceeds the file");
  const auto header = nlohmann::json::parse(file.substr(8, n), nullptr, false);
  if (header.is_discarded() || !header.is_object()) return fail("header is not a JSON object");
  const std::string_view data(file.data() + 8 + n, file.size() - 8 - n);
  // Read every tensor into a copy first: the model changes only if all of them are valid.
  auto refs = Tensors();
  std::vector<std::vector<float>> loaded;
  for (const TensorRef& t : refs) {
    auto it = header.find(t.name);
    if (it == header.end()) return fail("missing tensor '" + t.name + "'");
    try {
      if (it->at("dtype") != "F32") {
        return fail("tensor '" + t.name + "' has dtype " + it->at("dtype").dump() +
                    ", only F32 is supported");
      }
      const auto shape = it->at("shape").get<std::vector<int64_t>>();
      if (shape != t.shape) {
        return fail("tensor '" + t.name + "' has shape " + it->at("shape").dump() + ", expected " +
                    nlohmann::json(t.shape).dump());
      }
      const auto range = it->at("data_offsets").get<std::vector<uint64_t>>();
      const uint64_t want = t.data->size() * sizeof(float);
      if (range.size() != 2 || range[1] < range[0] || range[1] - range[0] != want ||
          range[1] > data.size()) {
        return fail("tensor '" + t.name + "' has bad data_offsets " +
                    it->at("data_offsets").dump());
      }
      std::vector<float> values(t.data->size());
      std::memcpy(values.data(), data.data() + range[0], want);
      loaded.push_back(std::move(values));
    } catch (const nlohmann::json::exception& e) {
      return fail("tensor '" + t.name + "': " + e.what());
    }
  }
  for (size_t i = 0; i < refs.size(); ++i) *refs[i].data = std::move(loaded[i]);
  return Status::Ok();
}

}  // namespace marconi::engine
