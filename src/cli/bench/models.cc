#include "cli/bench/models.h"

#include <nlohmann/json.hpp>

#include "cli/bench/http_get.h"
#include "common/status_macros.h"

namespace tandem::bench {

StatusOr<std::vector<ServedModel>> ListModels(HttpClient& client, const ServerAddress& server,
                                              const std::string& api_key) {
  const std::string path = server.api_prefix + "/models";
  TANDEM_ASSIGN_OR_RETURN(std::string body, HttpGetBody(client, server, path, api_key));
  const std::string url = "http://" + server.host_header + path;
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array()) {
    return InvalidArgumentError("GET " + url + ": not an OpenAI model list");
  }
  std::vector<ServedModel> models;
  for (const nlohmann::json& entry : j["data"]) {
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_string()) continue;
    ServedModel m;
    m.id = entry["id"].get<std::string>();
    if (entry.contains("owned_by") && entry["owned_by"].is_string()) {
      m.owned_by = entry["owned_by"].get<std::string>();
    }
    if (entry.contains("vocab_size") && entry["vocab_size"].is_number_integer()) {
      m.vocab_size = entry["vocab_size"].get<int64_t>();
    }
    models.push_back(std::move(m));
  }
  return models;
}

}  // namespace tandem::bench
