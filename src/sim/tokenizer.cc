#include <sentencepiece_processor.h>

#include <memory>

#include "sim/trace_builder.h"

namespace marconi::sim {

Result<Encoder> LoadSentencePiece(const std::string& path) {
  auto processor = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = processor->Load(path);
  if (!status.ok()) {
    return Status(status.code() == sentencepiece::util::StatusCode::kNotFound
                      ? StatusCode::kIoError
                      : StatusCode::kParseError,
                  "cannot load tokenizer '" + path + "': " + status.ToString());
  }
  return Encoder([processor](std::string_view text) {
    std::vector<int> ids;
    (void)processor->Encode(text, &ids);  // fails only on a model that did not load
    return std::vector<Token>(ids.begin(), ids.end());
  });
}

}  // namespace marconi::sim
