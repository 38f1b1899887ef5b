// A small Jinja2 interpreter for chat templates, with Hugging Face transformers' semantics
// (jinja2 sandboxed environment, trim_blocks and lstrip_blocks on, loopcontrols, the `tojson`
// filter with HF's options, `raise_exception`, `strftime_now`).
//
// Thread safety: a Template is immutable after parsing; Render may run on many threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tandem/status.h"

namespace tandem::jinja {

class Template {
 public:
  // Parses `source`. A syntax error or an unsupported construct is InvalidArgument naming it and
  // its line ("line 3: unknown filter 'foo'").
  static StatusOr<std::unique_ptr<Template>> Parse(std::string_view source);
  ~Template();

  // Renders with `context` (a JSON object: messages, add_generation_prompt, bos_token, tools,
  // ...). Runtime errors (raise_exception, a type error) are InvalidArgument with the line.
  // transformers passes `tools` and `documents` as null when absent; callers should too.
  StatusOr<std::string> Render(const nlohmann::json& context) const;

  // The same with insertion-ordered objects. nlohmann::json sorts object keys, while Python keeps
  // them in the order the request gave them, and `tojson` or a loop over a dict shows that order:
  // to render byte for byte what transformers renders for a request, parse it as ordered_json.
  StatusOr<std::string> RenderOrdered(const nlohmann::ordered_json& context) const;

 private:
  struct Impl;
  explicit Template(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::jinja
