// tandem-decode-worker: serves tandem.v1.Worker for one engine. The aggregated role (the
// default) prefills and decodes; the decode role is for disaggregated serving (issue 17). The
// daemon's assembly is shared with tandem-prefill-worker (src/worker/worker_daemon.h).
#include "worker/worker_daemon.h"

int main(int argc, char** argv) {
  return tandem::worker::RunWorkerDaemon(
      argc, argv,
      {.name = "tandem-decode-worker",
       .description = "a tandem worker (aggregated: prefill and decode; or decode)",
       .roles = {"aggregated", "decode"}});
}
