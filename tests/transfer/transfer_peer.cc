// The other process of the cross-process transfer tests: registers one region filled with
// Pattern(bytes, seed), prints "<backend> <descriptor in hex>" on one line, and keeps the region
// until its stdin closes (or it is killed, which is what the peer-death test does).
//
//   transfer_peer <backend> <host|device> <bytes> <seed> [device index]
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tests/transfer/transfer_testing.h"

int main(int argc, char** argv) {
  using namespace tandem::transfer;
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: transfer_peer <backend> <host|device> <bytes> <seed> [device]\n";
    return 2;
  }
  const std::string kind = argv[2];
  const size_t bytes = std::strtoull(argv[3], nullptr, 10);
  const uint64_t seed = std::strtoull(argv[4], nullptr, 10);
  const int device = argc == 6 ? std::atoi(argv[5]) : 0;
  auto backend = CreateBackend(argv[1]);
  if (!backend.ok()) {
    std::cerr << backend.status() << "\n";
    return 1;
  }
  testing::Buffer buffer(kind == "device" ? MemoryKind::kDevice : MemoryKind::kHost,
                         testing::Pattern(bytes, seed), device);
  if (!buffer.ok()) {
    std::cerr << "transfer_peer: cannot allocate " << kind << " memory\n";
    return 1;
  }
  auto registration = (*backend)->Register(buffer.region());
  if (!registration.ok()) {
    std::cerr << registration.status() << "\n";
    return 1;
  }
  const RemoteDescriptor& d = (*registration)->descriptor();
  std::cout << d.backend << " " << wire::ToHex(d.bytes) << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
  }
  return 0;
}
