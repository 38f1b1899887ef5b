// What several benchmarks share: the calling thread's CPU time, and pinning the calling thread
// (or a process about to exec) to one core.
//
// Thread safety: both act on the calling thread only.
#pragma once

#include <sched.h>
#include <time.h>

namespace tandem::bench {

inline double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

inline void PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ::sched_setaffinity(0, sizeof(set), &set);
}

}  // namespace tandem::bench
