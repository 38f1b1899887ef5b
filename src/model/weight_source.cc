// OpenCheckpoint (safetensors checkpoints, single or sharded) and ExpectedTensors. RandomWeights
// lives in random_weights.cc.

#include "model/weight_source.h"

#include <algorithm>
#include <map>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/json_fields.h"
#include "model/safetensors.h"
#include "tandem/block_hash.h"

namespace tandem::model {
namespace {

// One or more safetensors files and the table of which tensor lives in which. The table is the
// index's weight_map (or the single file's contents), so a tensor a shard holds but the index does
// not list is not served: the index is the checkpoint's statement of what it contains.
class CheckpointWeights final : public WeightSource {
 public:
  CheckpointWeights(std::string source, std::vector<std::unique_ptr<SafetensorsFile>> files,
                    std::map<std::string, const SafetensorsFile*, std::less<>> tensors)
      : source_(std::move(source)), files_(std::move(files)), tensors_(std::move(tensors)) {}

  StatusOr<TensorView> Find(std::string_view name,
                            std::span<const int64_t> expected_shape) const override {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      return NotFoundError(source_ + ": no tensor " + QuoteForMessage(name));
    }
    const SafetensorsFile& file = *it->second;
    TANDEM_ASSIGN_OR_RETURN(TensorView view, file.Tensor(name));
    if (!std::ranges::equal(view.shape, expected_shape)) {
      return InvalidArgumentError(file.path().string() + ": tensor " + QuoteForMessage(name) +
                                  " has shape " + ShapeString(view.shape) + ", expected " +
                                  ShapeString(expected_shape));
    }
    return view;
  }

  bool Contains(std::string_view name) const override {
    return tensors_.find(name) != tensors_.end();
  }

  std::string Identity() const override {
    // Files in name order (shards are kept by name; a single file is alone).
    std::string identity = "safetensors";
    for (const auto& file : files_) {
      const auto header = file->header_bytes();
      const uint64_t hash = BlockHashSeed(
          std::string_view(reinterpret_cast<const char*>(header.data()), header.size()));
      identity +=
          fmt::format(";{}:{}:{:016x}", file->path().filename().string(), file->size(), hash);
    }
    return identity;
  }

 private:
  const std::string source_;  // The file named when a tensor is missing.
  const std::vector<std::unique_ptr<SafetensorsFile>> files_;
  const std::map<std::string, const SafetensorsFile*, std::less<>> tensors_;
};

bool IsFile(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

StatusOr<std::unique_ptr<WeightSource>> OpenSingleFile(const std::filesystem::path& path) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  std::map<std::string, const SafetensorsFile*, std::less<>> tensors;
  for (std::string& name : file->TensorNames()) tensors.emplace(std::move(name), file.get());
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  files.push_back(std::move(file));
  return std::make_unique<CheckpointWeights>(path.string(), std::move(files), std::move(tensors));
}

StatusOr<std::unique_ptr<WeightSource>> OpenSharded(const std::filesystem::path& index_path) {
  const std::string index_source = index_path.string();
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  TANDEM_ASSIGN_OR_RETURN(auto weight_map, ParseSafetensorsIndex(text, index_source));

  // Each shard is mapped once, however many tensors it holds.
  std::map<std::string, std::unique_ptr<SafetensorsFile>, std::less<>> shards;
  std::map<std::string, const SafetensorsFile*, std::less<>> tensors;
  const std::filesystem::path folder = index_path.parent_path();
  for (const auto& [tensor, shard_name] : weight_map) {
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> shard,
                              SafetensorsFile::Open(folder / shard_name));
      it = shards.emplace(shard_name, std::move(shard)).first;
    }
    const SafetensorsFile& shard = *it->second;
    if (!shard.Contains(tensor)) {
      return NotFoundError(shard.path().string() + ": no tensor " + QuoteForMessage(tensor) +
                           ", which " + index_source + " places there");
    }
    tensors.emplace(tensor, &shard);
  }
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  files.reserve(shards.size());
  for (auto& [name, shard] : shards) files.push_back(std::move(shard));
  return std::make_unique<CheckpointWeights>(index_source, std::move(files), std::move(tensors));
}

void AddTensor(std::vector<TensorSpec>* specs, std::string name, std::vector<int64_t> shape) {
  specs->push_back(TensorSpec{std::move(name), std::move(shape)});
}

}  // namespace

StatusOr<std::unique_ptr<WeightSource>> OpenCheckpoint(const std::filesystem::path& model_dir) {
  const std::filesystem::path single = model_dir / "model.safetensors";
  if (IsFile(single)) return OpenSingleFile(single);
  const std::filesystem::path index = model_dir / "model.safetensors.index.json";
  if (IsFile(index)) return OpenSharded(index);
  return NotFoundError(model_dir.string() +
                       ": no model.safetensors or model.safetensors.index.json");
}

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config) {
  const int64_t vocab = config.vocab_size;
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  const int64_t q_out = static_cast<int64_t>(config.num_attention_heads) * config.head_dim;
  const int64_t kv_out = static_cast<int64_t>(config.num_key_value_heads) * config.head_dim;

  std::vector<TensorSpec> specs;
  specs.reserve(3 + static_cast<size_t>(config.num_hidden_layers) * 16);
  AddTensor(&specs, "model.embed_tokens.weight", {vocab, hidden});
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    AddTensor(&specs, p + "input_layernorm.weight", {hidden});
    AddTensor(&specs, p + "self_attn.q_proj.weight", {q_out, hidden});
    AddTensor(&specs, p + "self_attn.k_proj.weight", {kv_out, hidden});
    AddTensor(&specs, p + "self_attn.v_proj.weight", {kv_out, hidden});
    AddTensor(&specs, p + "self_attn.o_proj.weight", {hidden, q_out});
    if (config.attention_bias) {
      AddTensor(&specs, p + "self_attn.q_proj.bias", {q_out});
      AddTensor(&specs, p + "self_attn.k_proj.bias", {kv_out});
      AddTensor(&specs, p + "self_attn.v_proj.bias", {kv_out});
    }
    if (config.o_proj_bias) AddTensor(&specs, p + "self_attn.o_proj.bias", {hidden});
    AddTensor(&specs, p + "post_attention_layernorm.weight", {hidden});
    AddTensor(&specs, p + "mlp.gate_proj.weight", {inter, hidden});
    AddTensor(&specs, p + "mlp.up_proj.weight", {inter, hidden});
    AddTensor(&specs, p + "mlp.down_proj.weight", {hidden, inter});
    if (config.mlp_bias) {
      AddTensor(&specs, p + "mlp.gate_proj.bias", {inter});
      AddTensor(&specs, p + "mlp.up_proj.bias", {inter});
      AddTensor(&specs, p + "mlp.down_proj.bias", {hidden});
    }
  }
  AddTensor(&specs, "model.norm.weight", {hidden});
  if (!config.tie_word_embeddings) AddTensor(&specs, "lm_head.weight", {vocab, hidden});
  return specs;
}

}  // namespace tandem::model
