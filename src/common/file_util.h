// Files: whole-file reads and read-only memory maps, with errors that name the path.
//
// Thread safety: MappedFile is immutable after Open; its bytes may be read from any thread.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "tandem/status.h"

namespace tandem {

StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);
// Writes `text` to `path` through a temporary file and a rename: readers see all or nothing.
Status WriteFileAtomically(const std::string& path, const std::string& text);

// A read-only, private memory map of a whole file. Unmapped by the destructor.
class MappedFile {
 public:
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::filesystem::path path_;
  const std::byte* data_;
  size_t size_;
};

}  // namespace tandem
