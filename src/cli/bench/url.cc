#include "cli/bench/url.h"

#include <charconv>

namespace tandem::bench {

StatusOr<ServerAddress> ParseBaseUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("--base-url '" + std::string(url) + "': " + std::string(why));
  };
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return bad(url.find("://") == std::string_view::npos
                   ? "expected http://host[:port][/prefix]"
                   : "only http:// is supported (put a TLS proxy in front for https)");
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  ServerAddress address;
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), address.port);
    if (ec != std::errc() || end != port.data() + port.size() || address.port < 1 ||
        address.port > 65535) {
      return bad("the port is not a number in 1..65535");
    }
    authority = authority.substr(0, colon);
  }
  if (authority.size() > 1 && authority.front() == '[' && authority.back() == ']') {
    authority = authority.substr(1, authority.size() - 2);
  }
  if (authority.empty()) return bad("no host");
  address.host = std::string(authority);
  address.host_header = std::string(rest.substr(0, slash));
  while (path.ends_with('/')) path.remove_suffix(1);
  address.api_prefix = std::string(path);
  if (!path.ends_with("/v1")) address.api_prefix += "/v1";
  return address;
}

}  // namespace tandem::bench
