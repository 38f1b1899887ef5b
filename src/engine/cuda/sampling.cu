// Device sampling (see sampling.h for the contract and where it differs from the CPU sampler).
//
// Every selection is a question about the candidates in Before order (key descending, then id
// ascending): "where does the running count, or the running weight, reach `target`?". It is
// answered by a radix descent on the 32-bit keys: a histogram per digit (12, 10, 10 bits), a
// block-wide scan to find the digit whose bin crosses the target, then the next digit within that
// bin. Tokens with equal keys have equal weights, so how many of them are needed is a division;
// which ones is "the r smallest ids", found by one more descent on the ids. Histograms hold
// integers (counts, or weights in fixed point), so their sums do not depend on the order in which
// threads add to them.
//
// Passes over the row (each reads the logits from L2):
//   A  argmax of the penalized logits (all a greedy row needs);
//   B  level-0 histogram of the candidates (count; weight too when top-k is off);
// then, when the candidates that matter (those above the top-k boundary bin, or all of them
// without top-k) fit in shared memory ("list mode"):
//   C  gather them; top-k, top-p and the draw run on the list in shared memory.
// Otherwise ("row mode") each cut gathers only the one level-0 bin it lands in (a pass each,
// shared memory or, past kListCap, the scratch list), after a pass M that recounts weights within
// the top-k set when top-k is on. Logprobs add a log-sum-exp pass and, for the n best, a histogram
// pass and a gather pass.
#include <cooperative_groups.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "engine/cuda/sampling.h"

namespace tandem::engine::cuda {
namespace {

namespace cg = cooperative_groups;
using u64 = unsigned long long;

// 512 threads of up to 128 registers: the row loops keep 8 (light work per token) or 4 (weights,
// gathers) 16-byte loads in flight per thread, 32-64 KiB per SM, without spilling.
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kUnrollLight = 8;
constexpr int kUnrollHeavy = 4;
constexpr int kBins0 = 4096;    // level 0: key bits 31..20
constexpr int kBins12 = 1024;   // levels 1 and 2: key bits 19..10, 9..0
constexpr int kListCap = 8192;  // candidates gathered into shared memory
constexpr float kInf = INFINITY;

static_assert(kBins0 % kThreads == 0 && kBins12 % kThreads == 0, "bins per thread");
static_assert(kMaxSampleVocab <= (1 << 20), "the id descent assumes ~id has 12 high bits set");

// Shared memory of one CTA (dynamic: more than the 48 KiB a static declaration may take).
struct Shared {
  u64 mass0[kBins0];            // level-0 weights of the row; a list descent's level-0 histogram
  unsigned int count0[kBins0];  // level-0 counts of the row
  u64 hist[kBins12];            // levels 1 and 2 of a list descent
  u64 list[kListCap];           // gathered candidates (Ord values), when they fit
  u64 top[kMaxTopLogprobs];     // the n best raw logits (Ord values), for logprobs
  u64 warp_u64[kWarps];
  double warp_f64[kWarps];
  SampleRow row;  // this CTA's row (kept here rather than in registers)
  u64 found_before;
  int found_digit;
  int list_size;
  int top_size;
};

// Per row: the overflow list (u64 per token), then the penalized copy (float per token), 256-byte
// aligned.
__host__ __device__ inline size_t ScratchBytesPerRow(int vocab) {
  return (static_cast<size_t>(vocab) * (sizeof(u64) + sizeof(float)) + 255) / 256 * 256;
}

// ---- Keys -------------------------------------------------------------------------------------

__device__ __forceinline__ float Sanitized(float x) { return isnan(x) ? -kInf : x; }

// Order-preserving key of a NaN-free float; -0 maps to +0's key so that key equality is float
// equality (the CPU's comparisons treat them as equal).
__device__ __forceinline__ uint32_t Key(float x) {
  uint32_t b = __float_as_uint(x);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float KeyToFloat(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

// Before order as one integer: larger Ord = earlier (higher key, then lower id). Ids < 2^20.
__device__ __forceinline__ u64 Ord(uint32_t key, uint32_t id) {
  return (static_cast<u64>(key) << 32) | static_cast<uint32_t>(~id);
}
__device__ __forceinline__ uint32_t KeyOf(u64 ord) { return static_cast<uint32_t>(ord >> 32); }
__device__ __forceinline__ uint32_t IdOf(u64 ord) { return ~static_cast<uint32_t>(ord); }

// floor(w × 2^44) for w in [0, 1], from the float's bits (integer pipe only).
__device__ __forceinline__ u64 FixedWeight(float w) {
  const uint32_t b = __float_as_uint(w);
  const int e = static_cast<int>(b >> 23);  // w >= 0: no sign bit
  const uint32_t mant = (b & 0x7FFFFFu) | 0x800000u;
  // w = mant × 2^(e - 150), so w × 2^44 = mant × 2^(e - 106).
  if (e >= 106) return static_cast<u64>(mant) << (e - 106);  // e <= 127: at most 2^44
  const int s = 106 - e;
  return s < 24 ? static_cast<u64>(mant >> s) : 0;
}

// The CPU's weight exp((l - m) / T), in fixed point. The quotient is x × (1/T) corrected by one
// residual step (Markstein), which is the rounded quotient but for rare 1-ulp cases, without a
// division per token.
struct Weights {
  float m = 0.0f;
  float t = 1.0f;
  float inv_t = 1.0f;
  float zero_below = -kInf;  // m - 31 T: below it exp((l - m) / T) < 2^-44 (fixed point 0)

  __device__ static Weights Of(float max, float temperature) {
    Weights w;
    w.m = max;
    w.t = temperature;
    w.inv_t = __frcp_rn(temperature);
    w.zero_below = __fsub_rn(max, __fmul_rn(31.0f, temperature));
    return w;
  }

  __device__ __forceinline__ u64 operator()(float l) const {
    if (l < zero_below) return 0;
    const float x = __fsub_rn(l, m);  // <= 0
    float q = __fmul_rn(x, inv_t);
    if (!(q > -150.0f)) return 0;  // underflows (and -inf logits)
    const float r = __fmaf_rn(-q, t, x);
    q = __fmaf_rn(r, inv_t, q);
    return FixedWeight(expf(q));
  }
};

// ---- Block-wide helpers (every thread calls them; every thread gets the result) ---------------

__device__ __forceinline__ u64 WarpSum(u64 v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ u64 WarpMax(u64 v) {
  for (int o = 16; o > 0; o /= 2) {
    const u64 other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  return v;
}

__device__ u64 BlockSum(Shared& s, u64 v) {
  v = WarpSum(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0) s.warp_u64[threadIdx.x / 32] = v;
  __syncthreads();
  u64 total = 0;
  for (int w = 0; w < kWarps; ++w) total += s.warp_u64[w];
  return total;
}

__device__ u64 BlockMax(Shared& s, u64 v) {
  v = WarpMax(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0) s.warp_u64[threadIdx.x / 32] = v;
  __syncthreads();
  u64 best = 0;
  for (int w = 0; w < kWarps; ++w) best = s.warp_u64[w] > best ? s.warp_u64[w] : best;
  return best;
}

// A float sum in a fixed order (butterfly within warps, then warps in order): the same bits for
// the same per-thread inputs.
__device__ double BlockSumDeterministic(Shared& s, double v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (threadIdx.x % 32 == 0) s.warp_f64[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kWarps; ++w) total += s.warp_f64[w];
  return total;
}

// Exclusive prefix sum over threads in thread order; *total gets the sum of all.
__device__ u64 BlockExclusiveScan(Shared& s, u64 v, u64* total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  u64 x = v;
  for (int o = 1; o < 32; o *= 2) {
    const u64 y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  __syncthreads();
  if (lane == 31) s.warp_u64[warp] = x;
  __syncthreads();
  if (warp == 0) {
    u64 w = lane < kWarps ? s.warp_u64[lane] : 0;
    for (int o = 1; o < 32; o *= 2) {
      const u64 y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    if (lane < kWarps) s.warp_u64[lane] = w;
  }
  __syncthreads();
  *total = s.warp_u64[kWarps - 1];
  return (warp > 0 ? s.warp_u64[warp - 1] : 0) + x - v;
}

struct Found {
  int digit;   // the bin where the running sum, from the highest digit down, reaches the target
  u64 before;  // sum of the bins above it
};

// Walks hist[nbins - 1] down to hist[0] (Before order) and finds where the running sum reaches
// `target` (>= 1). A target past the total (a caller's bug) answers the lowest bin.
template <typename T>
__device__ Found FindCrossing(Shared& s, const T* hist, int nbins, u64 target) {
  const int per = nbins / kThreads;
  const int first = static_cast<int>(threadIdx.x) * per;  // positions first.. in descending order
  u64 local = 0;
  for (int j = 0; j < per; ++j) local += hist[nbins - 1 - (first + j)];
  __syncthreads();  // found_* may still be read by a previous call
  if (threadIdx.x == 0) s.found_digit = -1;
  u64 total = 0;
  const u64 excl = BlockExclusiveScan(s, local, &total);  // synchronises
  if (excl < target && target <= excl + local) {
    u64 acc = excl;
    for (int j = 0; j < per; ++j) {
      const int digit = nbins - 1 - (first + j);
      const u64 h = hist[digit];
      if (acc + h >= target) {
        s.found_digit = digit;
        s.found_before = acc;
        break;
      }
      acc += h;
    }
  }
  __syncthreads();
  if (s.found_digit < 0) return {0, total - hist[0]};
  return {s.found_digit, s.found_before};
}

// ---- Passes over the row ----------------------------------------------------------------------

// Calls fn(sanitized logit, token id) for every token of the row, each thread on a fixed subset
// in a fixed order, with kUnroll 16-byte loads in flight per thread. Plain loads, not __ldg: the
// penalized copy is written by this kernel.
template <int kUnroll = kUnrollLight, typename Fn>
__device__ __forceinline__ void ForEachLogit(const float* row, int vocab, Fn&& fn) {
  const int tid = static_cast<int>(threadIdx.x);
  int head = static_cast<int>(((16 - (reinterpret_cast<uintptr_t>(row) & 15)) & 15) / 4);
  head = head < vocab ? head : vocab;
  if (tid < head) fn(Sanitized(row[tid]), static_cast<uint32_t>(tid));
  const float4* body = reinterpret_cast<const float4*>(row + head);
  const int n4 = (vocab - head) / 4;
  for (int base = tid; base < n4; base += kThreads * kUnroll) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kThreads;
      if (i < n4) v[u] = body[i];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kThreads;
      if (i < n4) {
        const uint32_t id = static_cast<uint32_t>(head + 4 * i);
        fn(Sanitized(v[u].x), id);
        fn(Sanitized(v[u].y), id + 1);
        fn(Sanitized(v[u].z), id + 2);
        fn(Sanitized(v[u].w), id + 3);
      }
    }
  }
  for (int i = head + 4 * n4 + tid; i < vocab; i += kThreads) {
    fn(Sanitized(row[i]), static_cast<uint32_t>(i));
  }
}

// A slot of an append-only array whose size is *size: one atomic for the threads of a warp that
// call it together.
__device__ __forceinline__ int AppendIndex(int* size) {
  const cg::coalesced_group g = cg::coalesced_threads();
  int base = 0;
  if (g.thread_rank() == 0) base = atomicAdd(size, static_cast<int>(g.size()));
  return g.shfl(base, 0) + static_cast<int>(g.thread_rank());
}

// Appends, in no particular order, the Ord of every token that `classify(raw, id, &ord)` sends
// to 1 (into `list`, returns how many) or 2 (into s.top).
template <typename Classify>
__device__ int Gather(Shared& s, u64* list, const float* row, int vocab, Classify classify) {
  __syncthreads();
  if (threadIdx.x == 0) {
    s.list_size = 0;
    s.top_size = 0;
  }
  __syncthreads();
  ForEachLogit<kUnrollHeavy>(row, vocab, [&](float raw, uint32_t id) {
    u64 ord = 0;
    const int dest = classify(raw, id, &ord);
    if (dest == 0) return;
    // One shared atomic per warp and destination.
    if (dest == 1) {
      list[AppendIndex(&s.list_size)] = ord;
    } else {
      const int i = AppendIndex(&s.top_size);
      if (i < kMaxTopLogprobs) s.top[i] = ord;
    }
  });
  __syncthreads();
  return s.list_size;
}

// ---- Selection on a gathered list -------------------------------------------------------------

struct Crossing {
  uint32_t value;  // the value (key, or ~id) at which the running measure reaches the target
  u64 before;      // measure of the elements with larger values
};

// Among list elements with in_set(ord), ordered by value_of(ord) descending: the value at which
// the running measure reaches `target`, by radix descent from `level` (0: 12 bits at 20, 1: 10
// bits at 10, 2: 10 bits at 0) with the bits above it already known to be `prefix`.
template <typename ValueOf, typename InSet, typename MeasureOf>
__device__ Crossing Descend(Shared& s, const u64* list, int n, int level, uint32_t prefix,
                            u64 target, ValueOf value_of, InSet in_set, MeasureOf measure_of) {
  u64 before = 0;
  uint32_t known = prefix;
  for (; level < 3; ++level) {
    const int shift = level == 0 ? 20 : (level == 1 ? 10 : 0);
    const int bits = level == 0 ? 12 : 10;
    const int nbins = 1 << bits;
    const int high = shift + bits;
    u64* hist = level == 0 ? s.mass0 : s.hist;
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < nbins; i += kThreads) hist[i] = 0;
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < n; i += kThreads) {
      const u64 ord = list[i];
      if (!in_set(ord)) continue;
      const uint32_t v = value_of(ord);
      if (high < 32 && (v >> high) != known) continue;
      atomicAdd(&hist[(v >> shift) & static_cast<uint32_t>(nbins - 1)], measure_of(ord));
    }
    __syncthreads();
    const Found f = FindCrossing(s, hist, nbins, target - before);
    before += f.before;
    known = (known << bits) | static_cast<uint32_t>(f.digit);
  }
  return {known, before};
}

struct Selection {
  u64 ord;  // the element where the running measure (in Before order) first reaches the target
  u64 cum;  // the measure of the list's set through it
};

// The Before-order-first element of {list elements with ord >= restrict_ord} at which the running
// count (by_mass false) or weight reaches `target`. `level`/`prefix` as for Descend (level 1 with
// prefix = the level-0 bin when the list holds one bin).
__device__ __noinline__ Selection SelectInList(Shared& s, const u64* list, int n, int level,
                                               uint32_t prefix, bool by_mass, u64 target,
                                               u64 restrict_ord, const Weights& weight) {
  auto in_set = [restrict_ord](u64 ord) { return ord >= restrict_ord; };
  auto measure = [by_mass, &weight](u64 ord) -> u64 {
    return by_mass ? weight(KeyToFloat(KeyOf(ord))) : 1;
  };
  const Crossing c = Descend(
      s, list, n, level, prefix, target, [](u64 ord) { return KeyOf(ord); }, in_set, measure);
  const uint32_t key = c.value;
  const u64 w = by_mass ? weight(KeyToFloat(key)) : 1;
  // Tokens with this key weigh w each: the target needs r of them, the r lowest ids.
  u64 r = w > 0 && target > c.before ? (target - c.before + w - 1) / w : 1;
  u64 ord = 0;
  if (r <= 1) {
    r = 1;
    u64 best = 0;
    for (int i = static_cast<int>(threadIdx.x); i < n; i += kThreads) {
      const u64 o = list[i];
      if (KeyOf(o) == key && o >= restrict_ord && o > best) best = o;
    }
    ord = BlockMax(s, best);
  } else {
    // ~id has its 12 high bits set (ids < 2^20): start below them.
    const Crossing id = Descend(
        s, list, n, 1, 0xFFFu, r, [](u64 o) { return static_cast<uint32_t>(o); },
        [key, restrict_ord](u64 o) { return KeyOf(o) == key && o >= restrict_ord; },
        [](u64) -> u64 { return 1; });
    ord = (static_cast<u64>(key) << 32) | id.value;
  }
  return {ord, c.before + r * w};
}

// Sum of the weights of the list elements with ord >= restrict_ord.
__device__ u64 ListWeight(Shared& s, const u64* list, int n, u64 restrict_ord,
                          const Weights& weight) {
  u64 sum = 0;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kThreads) {
    const u64 o = list[i];
    if (o >= restrict_ord) sum += weight(KeyToFloat(KeyOf(o)));
  }
  return BlockSum(s, sum);
}

// ---- Targets ----------------------------------------------------------------------------------

// top-p keeps the smallest prefix whose weight is >= top_p × total (at least one token).
__device__ u64 TopPTarget(float top_p, u64 total) {
  const double t = ceil(static_cast<double>(top_p) * static_cast<double>(total));
  if (!(t >= 1.0)) return 1;
  if (t >= static_cast<double>(total)) return total;
  return static_cast<u64>(t);
}

// The draw takes the first token whose running weight exceeds u × kept, i.e. reaches
// floor(u × kept) + 1, computed exactly: u = bits × 2^-53.
__device__ u64 DrawTarget(uint64_t seed, uint64_t index, u64 kept) {
  const u64 bits = UniformDrawBits(seed, index);
  const u64 lo = bits * kept;
  const u64 hi = __umul64hi(bits, kept);
  return ((hi << 11) | (lo >> 53)) + 1;
}

// ---- Passes over the row (not inlined: each loop gets the registers to itself) ---------------

// The first index of the maximum, as an Ord.
__device__ __noinline__ u64 ArgMaxPass(Shared& s, const float* logits, int vocab) {
  u64 best = 0;
  ForEachLogit(logits, vocab, [&](float l, uint32_t id) {
    const u64 o = Ord(Key(l), id);
    best = o > best ? o : best;
  });
  return BlockMax(s, best);
}

// Writes the row's penalized logits (sanitized) to `copy` and returns the largest raw key. The
// CPU's operations in its order, without contraction into FMAs:
//   x = raw; if (repeated) x = x > 0 ? x / rep : x * rep;
//   if (output_count > 0) { x -= frequency * count; x -= presence; }
__device__ __noinline__ uint32_t PenalizedCopy(Shared& s, const float* logits, int vocab,
                                               const PenaltyEntry* entries, int count,
                                               float* copy) {
  uint32_t raw_best = 0;
  ForEachLogit(logits, vocab, [&](float raw, uint32_t id) {
    copy[id] = raw;
    const uint32_t k = Key(raw);
    raw_best = k > raw_best ? k : raw_best;
  });
  const SampleRow& row = s.row;
  __syncthreads();  // entries overwrite what other threads copied
  for (int i = static_cast<int>(threadIdx.x); i < count; i += kThreads) {
    const PenaltyEntry e = entries[i];
    if (e.token < 0 || e.token >= vocab) continue;
    float x = copy[e.token];
    if (e.repeated != 0) {
      x = x > 0.0f ? __fdiv_rn(x, row.repetition_penalty) : __fmul_rn(x, row.repetition_penalty);
    }
    if (e.output_count > 0) {
      x = __fsub_rn(x, __fmul_rn(row.frequency_penalty, static_cast<float>(e.output_count)));
      x = __fsub_rn(x, row.presence_penalty);
    }
    copy[e.token] = x;
  }
  return static_cast<uint32_t>(BlockMax(s, raw_best));  // synchronises: the copy is complete
}

// log(sum(exp(raw - raw_max))) + raw_max over the row (raw_max finite): float terms, summed in
// float per thread and in double across threads, in a fixed order.
__device__ __noinline__ double LogSumExpPass(Shared& s, const float* logits, int vocab,
                                             float raw_max) {
  float sum = 0.0f;
  ForEachLogit(logits, vocab, [&](float raw, uint32_t) { sum += expf(raw - raw_max); });
  return static_cast<double>(raw_max) + log(BlockSumDeterministic(s, sum));
}

// The candidates of a sampled row: the (penalized) logits l with l > -inf and l >= lo (min-p).
struct Candidates {
  float lo = -kInf;

  __device__ __forceinline__ bool Take(float l, uint32_t* key) const {
    if (!(l > -kInf && l >= lo)) return false;
    *key = Key(l);
    return true;
  }
};

// Level-0 histogram of the candidates with Ord >= restrict_ord: counts into s.count0, and weights
// into s.mass0 when with_weight (zero otherwise). Two functions, so that each loop gets the
// registers to itself.
__device__ __noinline__ void CandidateCounts(Shared& s, const float* logits, int vocab,
                                             Candidates c, u64 restrict_ord) {
  ForEachLogit(logits, vocab, [&](float l, uint32_t id) {
    uint32_t key;
    if (!c.Take(l, &key) || Ord(key, id) < restrict_ord) return;
    atomicAdd(&s.count0[key >> 20], 1u);
  });
}

__device__ __noinline__ void CandidateWeights(Shared& s, const float* logits, int vocab,
                                              Candidates c, Weights weight, u64 restrict_ord) {
  ForEachLogit<kUnrollHeavy>(logits, vocab, [&](float l, uint32_t id) {
    uint32_t key;
    if (!c.Take(l, &key) || Ord(key, id) < restrict_ord) return;
    atomicAdd(&s.count0[key >> 20], 1u);
    const u64 w = weight(l);
    if (w != 0) atomicAdd(&s.mass0[key >> 20], w);
  });
}

__device__ void CandidateHistogram(Shared& s, const float* logits, int vocab, Candidates c,
                                   Weights weight, bool with_weight, u64 restrict_ord) {
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < kBins0; i += kThreads) {
    s.count0[i] = 0;
    s.mass0[i] = 0;
  }
  __syncthreads();
  if (with_weight) {
    CandidateWeights(s, logits, vocab, c, weight, restrict_ord);
  } else {
    CandidateCounts(s, logits, vocab, c, restrict_ord);
  }
  __syncthreads();
}

// Gathers the candidates with level-0 bin in [bin_lo, bin_hi] and Ord >= restrict_ord into `list`;
// returns how many.
__device__ __noinline__ int GatherCandidates(Shared& s, u64* list, const float* logits, int vocab,
                                             Candidates c, int bin_lo, int bin_hi,
                                             u64 restrict_ord) {
  return Gather(s, list, logits, vocab, [&](float l, uint32_t id, u64* ord) {
    uint32_t key;
    if (!c.Take(l, &key)) return 0;
    const int bin = static_cast<int>(key >> 20);
    if (bin < bin_lo || bin > bin_hi) return 0;
    *ord = Ord(key, id);
    return *ord >= restrict_ord ? 1 : 0;
  });
}

// ---- The row's steps --------------------------------------------------------------------------

// The cut tokens of a sampled row: top-k (top_k > 0: the top_k best candidates, k_bin the
// level-0 bin of the last), then top-p and the draw.
struct Cuts {
  Candidates cand;
  Weights weight;
  u64 top_k = 0;
  int k_bin = 0;
  u64 k_before = 0;  // candidates in bins above k_bin
};

// List mode: the candidates in bins >= k_bin (at most kListCap) gathered once; top-k, top-p and
// the draw in shared memory. Returns the token.
__device__ __noinline__ uint32_t SampleFromList(Shared& s, const float* logits, int vocab,
                                                const Cuts& cuts) {
  const SampleRow& row = s.row;
  const int n = GatherCandidates(s, s.list, logits, vocab, cuts.cand, cuts.k_bin, kBins0 - 1, 0);
  u64 restrict_ord = 0;  // the set is the candidates with Ord >= restrict_ord
  if (cuts.top_k > 0) {
    restrict_ord = SelectInList(s, s.list, n, 0, 0, false, cuts.top_k, 0, cuts.weight).ord;
  }
  u64 kept = ListWeight(s, s.list, n, restrict_ord, cuts.weight);
  if (row.top_p < 1.0f) {
    const Selection cut = SelectInList(s, s.list, n, 0, 0, true, TopPTarget(row.top_p, kept),
                                       restrict_ord, cuts.weight);
    restrict_ord = cut.ord;
    kept = cut.cum;
  }
  const Selection draw =
      SelectInList(s, s.list, n, 0, 0, true, DrawTarget(row.seed, row.draw_index, kept),
                   restrict_ord, cuts.weight);
  return IdOf(draw.ord);
}

// The list of row mode: the candidates of one level-0 bin (with Ord >= the restriction when
// gathered), in shared memory or, past kListCap, in the scratch list.
struct BinList {
  u64* data = nullptr;
  int size = 0;
  int bin = -1;
};

// Makes `list` hold level-0 bin `bin` (unless it already does: gathered under a looser
// restriction, it is a superset that the selections filter).
__device__ void LoadBin(Shared& s, const float* logits, int vocab, u64* overflow,
                        const Candidates& cand, int bin, u64 restrict_ord, BinList* list) {
  if (bin == list->bin) return;
  list->data = s.count0[bin] <= kListCap ? s.list : overflow;
  list->size = GatherCandidates(s, list->data, logits, vocab, cand, bin, bin, restrict_ord);
  list->bin = bin;
}

// Row mode: level-0 histograms of the whole row; each cut gathers the one bin it lands in.
// s.count0 holds pass B's counts; s.mass0 its weights unless with_weights is false. Returns the
// token.
__device__ __noinline__ uint32_t SampleFromRow(Shared& s, const float* logits, int vocab,
                                               u64* overflow, const Cuts& cuts, bool have_weights) {
  const SampleRow& row = s.row;
  const int tid = static_cast<int>(threadIdx.x);
  BinList list;
  u64 restrict_ord = 0;  // the set is the candidates with Ord >= restrict_ord
  if (cuts.top_k > 0) {
    LoadBin(s, logits, vocab, overflow, cuts.cand, cuts.k_bin, 0, &list);
    restrict_ord = SelectInList(s, list.data, list.size, 1, static_cast<uint32_t>(cuts.k_bin),
                                false, cuts.top_k - cuts.k_before, 0, cuts.weight)
                       .ord;
  }
  // Pass M: the weights pass B left out, within the top-k set (all candidates when top-k is
  // off or keeps them all).
  if (!have_weights) {
    CandidateHistogram(s, logits, vocab, cuts.cand, cuts.weight, true, restrict_ord);
  }
  u64 local = 0;
  for (int i = tid; i < kBins0; i += kThreads) local += s.mass0[i];
  u64 kept = BlockSum(s, local);
  if (row.top_p < 1.0f) {
    const u64 target = TopPTarget(row.top_p, kept);
    const Found f = FindCrossing(s, s.mass0, kBins0, target);
    LoadBin(s, logits, vocab, overflow, cuts.cand, f.digit, restrict_ord, &list);
    const Selection cut = SelectInList(s, list.data, list.size, 1, static_cast<uint32_t>(f.digit),
                                       true, target - f.before, restrict_ord, cuts.weight);
    restrict_ord = cut.ord;
    kept = f.before + cut.cum;
    // The draw's histogram: nothing below the cut's bin, the kept part of it.
    __syncthreads();
    for (int i = tid; i < kBins0; i += kThreads) {
      if (i < f.digit) s.mass0[i] = 0;
      if (i == f.digit) s.mass0[i] = cut.cum;
    }
    __syncthreads();
  }
  const u64 target = DrawTarget(row.seed, row.draw_index, kept);
  const Found f = FindCrossing(s, s.mass0, kBins0, target);
  LoadBin(s, logits, vocab, overflow, cuts.cand, f.digit, restrict_ord, &list);
  const Selection draw = SelectInList(s, list.data, list.size, 1, static_cast<uint32_t>(f.digit),
                                      true, target - f.before, restrict_ord, cuts.weight);
  return IdOf(draw.ord);
}

// Temperature, min-p, top-k, top-p and the draw on a row whose penalized maximum m (at best_id) is
// finite. Returns the token.
__device__ __noinline__ uint32_t SampleFiltered(Shared& s, const float* logits, int vocab,
                                                u64* overflow, float m, uint32_t best_id) {
  const SampleRow& row = s.row;
  Cuts cuts;
  cuts.weight = Weights::Of(m, row.temperature);
  // min-p on logits: l >= m + T log(min_p) in double <=> l >= lo, lo the smallest float >= it.
  cuts.cand.lo = __double2float_ru(static_cast<double>(m) + row.min_p_offset);

  // Pass B: level-0 histogram of the candidates (with weights unless top-k may cut first).
  const bool k_candidate = row.top_k > 0 && row.top_k < vocab;
  CandidateHistogram(s, logits, vocab, cuts.cand, cuts.weight, !k_candidate, 0);
  u64 local = 0;
  for (int i = static_cast<int>(threadIdx.x); i < kBins0; i += kThreads) local += s.count0[i];
  const u64 num_candidates = BlockSum(s, local);
  if (num_candidates == 0) return best_id;  // min_p > 1 filtered out everything: keep the best.

  u64 region = num_candidates;  // candidates that can matter: those in bins >= k_bin
  if (k_candidate && static_cast<u64>(row.top_k) < num_candidates) {
    cuts.top_k = static_cast<u64>(row.top_k);
    const Found f = FindCrossing(s, s.count0, kBins0, cuts.top_k);
    cuts.k_bin = f.digit;
    cuts.k_before = f.before;
    region = f.before + s.count0[f.digit];
  }
  if (region <= kListCap) return SampleFromList(s, logits, vocab, cuts);
  return SampleFromRow(s, logits, vocab, overflow, cuts, /*have_weights=*/!k_candidate);
}

// Level-0 counts of the raw logits into s.count0.
__device__ __noinline__ void RawCounts(Shared& s, const float* logits, int vocab) {
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < kBins0; i += kThreads) s.count0[i] = 0;
  __syncthreads();
  ForEachLogit(logits, vocab,
               [&](float raw, uint32_t) { atomicAdd(&s.count0[Key(raw) >> 20], 1u); });
  __syncthreads();
}

// Tokens in level-0 bins above `bin` into s.top, those in `bin` into `list` (returns how many).
__device__ __noinline__ int GatherRaw(Shared& s, u64* list, const float* logits, int vocab,
                                      int bin) {
  return Gather(s, list, logits, vocab, [bin](float raw, uint32_t id, u64* ord) {
    const uint32_t key = Key(raw);
    const int b = static_cast<int>(key >> 20);
    if (b < bin) return 0;
    *ord = Ord(key, id);
    return b == bin ? 1 : 2;
  });
}

// The n best raw logits (Before order) into s.top[0, n), sorted.
__device__ __noinline__ void TopRaw(Shared& s, const float* logits, int vocab, int n,
                                    u64* overflow) {
  const int tid = static_cast<int>(threadIdx.x);
  RawCounts(s, logits, vocab);
  const Found f = FindCrossing(s, s.count0, kBins0, static_cast<u64>(n));
  u64* list = s.count0[f.digit] <= kListCap ? s.list : overflow;
  const int bin = f.digit;
  // Tokens in higher bins (fewer than n) go straight to s.top; the crossing bin to the list.
  const int size = GatherRaw(s, list, logits, vocab, bin);
  const Selection last = SelectInList(s, list, size, 1, static_cast<uint32_t>(bin), false,
                                      static_cast<u64>(n) - f.before, 0, Weights{});
  for (int i = tid; i < size; i += kThreads) {
    const u64 o = list[i];
    if (o >= last.ord) {
      const int slot = AppendIndex(&s.top_size);
      if (slot < kMaxTopLogprobs) s.top[slot] = o;
    }
  }
  __syncthreads();
  if (tid == 0) {
    for (int i = 1; i < n; ++i) {  // n <= 20: insertion sort, descending Ord
      const u64 v = s.top[i];
      int j = i;
      for (; j > 0 && s.top[j - 1] < v; --j) s.top[j] = s.top[j - 1];
      s.top[j] = v;
    }
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads, 1) SampleKernel(SampleBatchParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  Shared& s = *reinterpret_cast<Shared*>(smem);
  const int tid = static_cast<int>(threadIdx.x);
  if (tid == 0) s.row = p.rows[blockIdx.x];
  __syncthreads();
  const SampleRow& row = s.row;
  const int vocab = p.vocab;
  const float* logits = p.logits + static_cast<int64_t>(row.logits_row) * p.logits_stride;
  // Scratch of this row: the overflow list (vocab × 8 bytes), then the penalized copy (× 4).
  u64* overflow = reinterpret_cast<u64*>(static_cast<char*>(p.scratch) +
                                         ScratchBytesPerRow(vocab) * blockIdx.x);
  float* copy = reinterpret_cast<float*>(overflow + vocab);

  const bool logprobs = row.num_top_logprobs >= 0;

  // The penalized logits: a copy in scratch when the row has penalties.
  const float* src = logits;
  uint32_t raw_max_key = 0;
  if (row.penalty_count > 0) {
    raw_max_key =
        PenalizedCopy(s, logits, vocab, p.penalties + row.penalty_begin, row.penalty_count, copy);
    src = copy;
  }
  // Pass A: the first index of the penalized maximum.
  const u64 best = ArgMaxPass(s, src, vocab);
  const uint32_t best_id = IdOf(best);
  const float m = KeyToFloat(KeyOf(best));
  uint32_t token = best_id;
  // An infinite maximum (or all -inf) leaves nothing to sample from: the argmax, as on the CPU.
  if (row.temperature > 0.0f && m > -kInf && m < kInf) {
    token = SampleFiltered(s, src, vocab, overflow, m, best_id);
    if (token >= static_cast<uint32_t>(vocab)) token = best_id;  // unreachable; never read OOB
  }

  if (!logprobs) {
    if (tid == 0) {
      SampleResult* out = p.results + blockIdx.x;
      out->token = static_cast<int32_t>(token);
      out->logprob = 0.0f;
      out->num_top = 0;
    }
    return;
  }

  // Logprobs of the raw logits: log-sum-exp, then the chosen token's and the n best.
  const float raw_max = row.penalty_count > 0 ? KeyToFloat(raw_max_key) : m;
  const double lse =
      raw_max > -kInf && raw_max < kInf ? LogSumExpPass(s, logits, vocab, raw_max) : raw_max;
  int n = row.num_top_logprobs < kMaxTopLogprobs ? row.num_top_logprobs : kMaxTopLogprobs;
  n = n < vocab ? n : vocab;
  if (n > 0) TopRaw(s, logits, vocab, n, overflow);
  if (tid == 0) {
    SampleResult* out = p.results + blockIdx.x;
    out->token = static_cast<int32_t>(token);
    out->logprob = static_cast<float>(static_cast<double>(Sanitized(logits[token])) - lse);
    out->num_top = n;
    for (int i = 0; i < n; ++i) {
      out->top_tokens[i] = static_cast<int32_t>(IdOf(s.top[i]));
      out->top_logprobs[i] =
          static_cast<float>(static_cast<double>(KeyToFloat(KeyOf(s.top[i]))) - lse);
    }
  }
}

}  // namespace

size_t SampleScratchBytes(int vocab, int num_rows) {
  if (vocab <= 0 || num_rows <= 0) return 0;
  return ScratchBytesPerRow(vocab) * static_cast<size_t>(num_rows);
}

cudaError_t LaunchSample(const SampleBatchParams& p, cudaStream_t stream) {
  if (p.num_rows == 0) return cudaSuccess;
  if (p.num_rows < 0 || p.vocab < 1 || p.vocab > kMaxSampleVocab || p.logits_stride < p.vocab ||
      p.logits == nullptr || p.rows == nullptr || p.results == nullptr || p.scratch == nullptr) {
    return cudaErrorInvalidValue;
  }
  // The largest size any vocabulary needs, so that launches of different sizes on other threads
  // never see a smaller limit.
  const cudaError_t error = cudaFuncSetAttribute(
      SampleKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sizeof(Shared)));
  if (error != cudaSuccess) return error;
  SampleKernel<<<p.num_rows, kThreads, sizeof(Shared), stream>>>(p);
  return cudaGetLastError();
}

}  // namespace tandem::engine::cuda
