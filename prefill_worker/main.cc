// tandem-prefill-worker: a tandem worker in the prefill role (ARCHITECTURE §1, steps 1-3): it
// prefills prompts for decode workers and keeps their KV blocks under leases for the pull
// (Generate with prefill_only, ReleaseKv). The daemon's assembly is shared with
// tandem-decode-worker (src/worker/worker_daemon.h).
#include "worker/worker_daemon.h"

int main(int argc, char** argv) {
  return tandem::worker::RunWorkerDaemon(
      argc, argv,
      {.name = "tandem-prefill-worker",
       .description = "a tandem worker that prefills for decode workers",
       .roles = {"prefill"}});
}
