// Runs a parsed template: jinja2's scoping (a for loop's iterations, macros and with blocks get
// their own scope; `set` elsewhere assigns in the enclosing one), loop variables, macros and call
// blocks, break/continue, and name lookup through scopes, then the render context, then globals.
//
// Thread safety: RenderBody is reentrant; each call owns its scopes and values.
#pragma once

#include <string>

#include "model/jinja/ast.h"
#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

// Renders `body` with the variables of `context`. Errors are InvalidArgument naming the line.
StatusOr<std::string> RenderBody(const Body& body, const Dict& context);

}  // namespace tandem::jinja
