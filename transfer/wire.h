// The byte encoding of remote descriptors and control messages: fixed-width little-endian
// integers and length-prefixed byte strings, read back with bounds checks (a descriptor comes
// from another process, so a short or garbled one is an error, never a read past the end).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace tandem::transfer::wire {

class Writer {
 public:
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  Writer& Put(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);  // x86-64 and aarch64: little-endian
    return *this;
  }
  Writer& PutBytes(std::string_view bytes) {
    Put(static_cast<uint32_t>(bytes.size()));
    out_.append(bytes);
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  bool Get(T& v) {
    if (in_.size() < sizeof v) return false;
    std::memcpy(&v, in_.data(), sizeof v);
    in_.remove_prefix(sizeof v);
    return true;
  }
  bool GetBytes(std::string& bytes) {
    uint32_t n = 0;
    if (!Get(n) || in_.size() < n) return false;
    bytes.assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

// Descriptors as text (etcd values, command lines): lowercase hex. FromHex gives up (empty) on
// anything else.
inline std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

inline std::string FromHex(std::string_view hex) {
  const auto value = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  std::string out;
  if (hex.size() % 2 != 0) return out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = value(hex[i]), lo = value(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out += static_cast<char>(hi << 4 | lo);
  }
  return out;
}

}  // namespace tandem::transfer::wire
