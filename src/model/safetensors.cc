#include "model/safetensors.h"

#include <cstring>
#include <utility>

#include "common/status_macros.h"
#include "model/json_fields.h"

namespace tandem::model {
namespace {

using json = nlohmann::json;

// The safetensors reference implementation refuses larger headers; so do we, before parsing.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Element widths of every dtype the safetensors format defines with a whole number of bytes.
// Knowing the widths of dtypes tandem does not load lets Open validate their offsets too.
struct DTypeWidth {
  std::string_view name;
  uint64_t bytes;
};
constexpr DTypeWidth kDTypeWidths[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},
};

std::optional<uint64_t> DTypeWidthOf(std::string_view name) {
  for (const DTypeWidth& width : kDTypeWidths) {
    if (width.name == name) return width.bytes;
  }
  return std::nullopt;
}

std::string UnsupportedDTypeMessage(const std::string& source, std::string_view tensor,
                                    std::string_view dtype) {
  return source + ": tensor " + QuoteForMessage(tensor) + " has unsupported dtype " +
         QuoteForMessage(dtype) + " (supported: F32, F16, BF16)";
}

// Reads a list of non-negative integers (a shape or data_offsets).
StatusOr<std::vector<uint64_t>> ReadUnsignedList(const JsonFields& fields, std::string_view key) {
  const json* value = fields.Find(key);
  if (value == nullptr) return fields.Error(key, "is missing");
  if (!value->is_array()) {
    return fields.Error(
        key, "must be a list of non-negative integers, got " + std::string(JsonTypeName(*value)));
  }
  std::vector<uint64_t> out;
  out.reserve(value->size());
  for (const json& item : *value) {
    if (!item.is_number_unsigned()) {
      return fields.Error(
          key, "must be a list of non-negative integers, got " + QuoteJsonForMessage(*value));
    }
    out.push_back(item.get<uint64_t>());
  }
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  return Parse(std::move(file));
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::unique_ptr<MappedFile> file) {
  std::unique_ptr<SafetensorsFile> result(new SafetensorsFile(std::move(file)));
  TANDEM_RETURN_IF_ERROR(result->ParseHeader());
  return result;
}

Status SafetensorsFile::ParseHeader() {
  const std::string source = path().string();
  const std::span<const std::byte> bytes = file_->bytes();
  if (bytes.size() < 8) {
    return DataLossError(source + ": truncated: " + std::to_string(bytes.size()) +
                         " bytes, too short for the 8-byte header length");
  }
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);  // Little-endian, as is the host (tensor.cc).
  if (header_bytes > bytes.size() - 8) {
    return DataLossError(source + ": truncated: header length " + std::to_string(header_bytes) +
                         " exceeds the " + std::to_string(bytes.size() - 8) +
                         " bytes after the length field");
  }
  if (header_bytes > kMaxHeaderBytes) {
    return InvalidArgumentError(source + ": header length " + std::to_string(header_bytes) +
                                " is over the limit of " + std::to_string(kMaxHeaderBytes));
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8),
                                     static_cast<size_t>(header_bytes));
  header_ = bytes.subspan(0, 8 + static_cast<size_t>(header_bytes));
  TANDEM_ASSIGN_OR_RETURN(json header, ParseJsonObject(header_text, source + ": header"));
  const std::span<const std::byte> data = bytes.subspan(8 + static_cast<size_t>(header_bytes));

  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const json& value = item.value();
    if (name == "__metadata__") {
      if (value.is_null()) continue;
      const JsonFields fields(value, source + ": header", "__metadata__.");
      if (!value.is_object()) {
        return InvalidArgumentError(source + ": header: field '__metadata__' must be an object");
      }
      for (const auto& entry : value.items()) {
        TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> text,
                                fields.OptionalString(entry.key()));
        metadata_[entry.key()] = text.value_or("");
      }
      continue;
    }
    const std::string tensor_source = source + ": tensor " + QuoteForMessage(name);
    if (!value.is_object()) {
      return InvalidArgumentError(tensor_source + " must be an object, got " +
                                  std::string(JsonTypeName(value)));
    }
    const JsonFields fields(value, tensor_source);
    Entry entry;
    TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> dtype_name, fields.OptionalString("dtype"));
    if (!dtype_name.has_value()) return fields.Error("dtype", "is missing");
    entry.dtype_name = *dtype_name;
    entry.dtype = DTypeFromName(entry.dtype_name);
    const std::optional<uint64_t> width = DTypeWidthOf(entry.dtype_name);
    if (!width.has_value()) {
      return InvalidArgumentError(UnsupportedDTypeMessage(source, name, entry.dtype_name));
    }

    TANDEM_ASSIGN_OR_RETURN(std::vector<uint64_t> shape, ReadUnsignedList(fields, "shape"));
    uint64_t num_elements = 1;
    for (const uint64_t dim : shape) {
      if (dim > static_cast<uint64_t>(INT64_MAX) ||
          __builtin_mul_overflow(num_elements, dim, &num_elements)) {
        return fields.Error("shape", "is too large: " + QuoteJsonForMessage(*fields.Find("shape")));
      }
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t expected_bytes = 0;
    if (__builtin_mul_overflow(num_elements, *width, &expected_bytes)) {
      return fields.Error("shape", "is too large: " + QuoteJsonForMessage(*fields.Find("shape")));
    }

    TANDEM_ASSIGN_OR_RETURN(std::vector<uint64_t> offsets,
                            ReadUnsignedList(fields, "data_offsets"));
    if (offsets.size() != 2 || offsets[0] > offsets[1]) {
      return fields.Error("data_offsets", "must be [begin, end] with begin <= end, got " +
                                              QuoteJsonForMessage(*fields.Find("data_offsets")));
    }
    const uint64_t begin = offsets[0];
    const uint64_t end = offsets[1];
    if (end - begin != expected_bytes) {
      return fields.Error("data_offsets", "spans " + std::to_string(end - begin) +
                                              " bytes, but shape " + ShapeString(entry.shape) +
                                              " of " + entry.dtype_name + " needs " +
                                              std::to_string(expected_bytes));
    }
    if (end > data.size()) {
      return DataLossError(source + ": truncated: tensor " + QuoteForMessage(name) +
                           " ends at byte " + std::to_string(end) +
                           " of the data region, which has " + std::to_string(data.size()) +
                           " bytes");
    }
    entry.bytes = data.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
    tensors_.emplace(name, std::move(entry));
  }
  return OkStatus();
}

StatusOr<TensorView> SafetensorsFile::Tensor(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return NotFoundError(path().string() + ": no tensor " + QuoteForMessage(name));
  }
  const Entry& entry = it->second;
  if (!entry.dtype.has_value()) {
    return InvalidArgumentError(UnsupportedDTypeMessage(path().string(), name, entry.dtype_name));
  }
  return TensorView{*entry.dtype, entry.shape, entry.bytes};
}

bool SafetensorsFile::Contains(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

std::vector<std::string> SafetensorsFile::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;
}

std::optional<std::string> SafetensorsFile::DTypeNameOf(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) return std::nullopt;
  return it->second.dtype_name;
}

StatusOr<std::map<std::string, std::string, std::less<>>> ParseSafetensorsIndex(
    std::string_view json_text, std::string_view source) {
  TANDEM_ASSIGN_OR_RETURN(json root, ParseJsonObject(json_text, source));
  const JsonFields top(root, source);
  const json* weight_map = top.Find("weight_map");
  if (weight_map == nullptr) return top.Error("weight_map", "is missing");
  if (!weight_map->is_object()) {
    return top.Error("weight_map",
                     "must be an object, got " + std::string(JsonTypeName(*weight_map)));
  }
  const JsonFields fields(*weight_map, source, "weight_map.");
  std::map<std::string, std::string, std::less<>> out;
  for (const auto& item : weight_map->items()) {
    TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> shard, fields.OptionalString(item.key()));
    if (!shard.has_value() || shard->empty()) {
      return fields.Error(item.key(), "must name a shard file");
    }
    // The name is joined to the checkpoint folder: keep it inside.
    const std::filesystem::path shard_path(*shard);
    bool escapes = shard_path.is_absolute() || shard_path.has_root_path();
    for (const std::filesystem::path& part : shard_path) escapes = escapes || part == "..";
    if (escapes) {
      return fields.Error(
          item.key(), "names shard " + QuoteForMessage(*shard) + " outside the checkpoint folder");
    }
    out.emplace(item.key(), *std::move(shard));
  }
  return out;
}

}  // namespace tandem::model
