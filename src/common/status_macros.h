// TANDEM_RETURN_IF_ERROR / TANDEM_ASSIGN_OR_RETURN / TANDEM_CHECK.
//
// TANDEM_CHECK is for programmer errors only: it aborts. Input from a client, a file or a peer
// gets a Status, never a CHECK.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "tandem/status.h"

#define TANDEM_CONCAT_INNER_(a, b) a##b
#define TANDEM_CONCAT_(a, b) TANDEM_CONCAT_INNER_(a, b)

#define TANDEM_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    ::tandem::Status tandem_status_ = (expr);          \
    if (!tandem_status_.ok()) return tandem_status_;   \
  } while (0)

#define TANDEM_ASSIGN_OR_RETURN(lhs, expr) \
  TANDEM_ASSIGN_OR_RETURN_IMPL_(TANDEM_CONCAT_(tandem_statusor_, __LINE__), lhs, expr)

#define TANDEM_ASSIGN_OR_RETURN_IMPL_(var, lhs, expr) \
  auto var = (expr);                                  \
  if (!var.ok()) return var.status();                 \
  lhs = std::move(var).value()

#define TANDEM_CHECK(cond)                                                                \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
