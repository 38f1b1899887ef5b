// Python's string formatting: `format % args` and str.format(), as templates use them.
//
// Thread safety: pure functions.
#pragma once

#include "model/jinja/value.h"
#include "tandem/status.h"

namespace tandem::jinja {

// printf-style: %s %r %a %d %i %u %f %F %e %E %g %G %x %X %o %c %% with flags, width, precision
// and %(name)s keys; a safe (Markup) format escapes its arguments.
StatusOr<Value> PercentFormat(const Value& format, const Value& args);

// str.format: {} {0} {name} fields, !s/!r conversions and [[fill]align][sign][0][width]
// [.precision][type] specs for s, d, f, e, g, x, o, b and %.
StatusOr<Value> StrFormat(const Value& format, const CallArgs& args);

}  // namespace tandem::jinja
