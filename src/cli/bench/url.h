// The server `tandem bench` drives, from --base-url.
//
// Thread safety: pure function.
#pragma once

#include <string>
#include <string_view>

#include "tandem/status.h"

namespace tandem::bench {

struct ServerAddress {
  std::string host;  // Name or address, as given.
  int port = 80;
  // Prefix of every API path, ending in "/v1" (e.g. "/v1", "/proxy/v1").
  std::string api_prefix = "/v1";
  // The Host header value ("host:port").
  std::string host_header;
};

// "http://host[:port][/prefix]" -> address; "/v1" is added to the prefix unless it already ends
// in it. https and other schemes are refused.
StatusOr<ServerAddress> ParseBaseUrl(std::string_view url);

}  // namespace tandem::bench
