// Reading the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data region the offsets index into.
//
// Open() validates the whole header against the file: a file shorter than its header or its
// tensors say is DataLoss, a malformed header InvalidArgument; both messages name the file. A
// tensor of a dtype tandem does not load (I64, F8_E4M3, ...) is accepted at Open, so that extra
// tensors never block loading, and refused by Tensor() with a message naming tensor and dtype.
//
// Also reads model.safetensors.index.json, the table of a sharded checkpoint.
//
// Thread safety: SafetensorsFile is immutable after Open; every const method may be called from
// any thread. Views it returns stay valid while the SafetensorsFile lives.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"
#include "model/tensor.h"
#include "tandem/status.h"

namespace tandem::model {

class SafetensorsFile {
 public:
  // Maps `path` and parses its header.
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);
  // Parses the header of an already mapped file (takes ownership).
  static StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::unique_ptr<MappedFile> file);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // The tensor `name`: NotFound when absent, InvalidArgument for an unsupported dtype; both name
  // the file and the tensor.
  StatusOr<TensorView> Tensor(std::string_view name) const;
  bool Contains(std::string_view name) const;
  // Every tensor name in the file, sorted, whatever its dtype.
  std::vector<std::string> TensorNames() const;
  // The dtype as the file spells it ("BF16", "I64"); nullopt when absent.
  std::optional<std::string> DTypeNameOf(std::string_view name) const;

  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }
  // The 8-byte length and the JSON header, as stored: every tensor's name, dtype, shape and
  // offsets (what defines the file, less the bytes of the tensors).
  std::span<const std::byte> header_bytes() const { return header_; }
  // The file's size in bytes.
  size_t size() const { return file_->bytes().size(); }
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  struct Entry {
    std::string dtype_name;
    std::optional<DType> dtype;  // nullopt: a dtype tandem does not load.
    std::vector<int64_t> shape;
    std::span<const std::byte> bytes;
  };

  explicit SafetensorsFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  Status ParseHeader();

  std::unique_ptr<MappedFile> file_;
  std::map<std::string, Entry, std::less<>> tensors_;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::span<const std::byte> header_;
};

// The weight_map of a model.safetensors.index.json: tensor name -> shard file name (relative to
// the index's folder). `source` names the file in errors. Shard names must be relative paths that
// stay inside the folder (no "..", not absolute).
StatusOr<std::map<std::string, std::string, std::less<>>> ParseSafetensorsIndex(
    std::string_view json_text, std::string_view source);

}  // namespace tandem::model
