// Parses a token stream into statements, with jinja2's grammar and operator precedence.
//
// Thread safety: pure function.
#pragma once

#include <string_view>

#include "model/jinja/ast.h"
#include "tandem/status.h"

namespace tandem::jinja {

// Syntax errors and constructs outside the supported subset are InvalidArgument naming the line:
// "line 3: unknown filter 'foo'", "line 1: unsupported tag 'extends'".
StatusOr<Body> ParseTemplate(std::string_view source);

}  // namespace tandem::jinja
