#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <vector>

#include "common/status_macros.h"

namespace tandem::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// splitmix64 (Steele, Lea and Flood 2014, with Vigna's constants): the increment and finalizer.
constexpr uint64_t kSplitMixIncrement = 0x9E3779B97F4A7C15ULL;

constexpr uint64_t SplitMix64Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Up to this k, top-k runs as a bounded heap over the logits (one pass, predictable branches);
// above it, nth_element. On 128k logits the heap is ~8x faster at k = 50, ~2x at k = 1024.
constexpr size_t kMaxHeapTopK = 1024;
// The draw first looks among this many best candidates (see FindCrossingInHead).
constexpr size_t kHead = 64;

// A NaN logit (a model bug) must not break the strict ordering the sorts below rely on; it is
// treated as a token the model ruled out.
float Sanitized(float logit) { return std::isnan(logit) ? kNegInf : logit; }

struct Candidate {
  float logit;
  int32_t token;
  float weight;  // exp((logit - max) / T), once temperature is applied.
};

// The one order every step uses: higher logit first, ties by lower token id. It is a strict total
// order on distinct tokens, so nth_element, sort and heaps agree on every set they pick. Since
// exp is monotonic it is also "descending probability, ties by id"; where two different logits
// round to the same probability, the logit decides.
bool Before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
}

// Collects the n best candidates offered, in Before order, with a bounded heap: O(V log n) but
// mostly one well-predicted comparison per offer, and no V-sized buffer.
class BestN {
 public:
  BestN(size_t n, std::vector<Candidate>* out) : n_(n), out_(*out) {
    out_.clear();
    out_.reserve(n);
  }

  void Offer(const Candidate& c) {
    // With Before as the heap's "less", the front is the worst of those kept.
    if (out_.size() < n_) {
      out_.push_back(c);
      std::push_heap(out_.begin(), out_.end(), Before);
    } else if (n_ > 0 && Before(c, out_.front())) {
      std::pop_heap(out_.begin(), out_.end(), Before);
      out_.back() = c;
      std::push_heap(out_.begin(), out_.end(), Before);
    }
  }

  // Sorts the kept candidates best first.
  void Finish() { std::sort_heap(out_.begin(), out_.end(), Before); }

 private:
  size_t n_;
  std::vector<Candidate>& out_;
};

// Per-thread buffers, so that a warm call allocates nothing; only `scratch` is in the API.
struct Workspace {
  std::vector<Candidate> candidates;
  std::vector<Candidate> head_cut;   // The best candidates, when top-p is cut among them.
  std::vector<Candidate> head_draw;  // The best candidates, when the draw lands among them.
  std::vector<Candidate> top_logprobs;
  std::vector<int32_t> output_sorted;
};

Workspace& LocalWorkspace() {
  thread_local Workspace workspace;
  return workspace;
}

// First index of the largest value (NaN-free input). Finding the value, then its first
// position, is ~2x faster than std::max_element's single pass.
int32_t ArgMax(std::span<const float> x) {
  float m = x[0];
  for (float v : x) m = v > m ? v : m;
  return static_cast<int32_t>(std::find(x.begin(), x.end(), m) - x.begin());
}

// log(sum(exp(x))), shifted by the max and accumulated in double (the terms themselves in float:
// their rounding is far below what a float logprob shows).
double LogSumExp(std::span<const float> x) {
  const float m = x[ArgMax(x)];
  if (!std::isfinite(m)) return m;
  double sum = 0.0;
  for (float v : x) sum += std::exp(v - m);
  return m + std::log(sum);
}

// Repetition, presence and frequency penalties on `logits`, a copy of the raw ones in `raw`.
void ApplyPenalties(const SamplingParams& params, const SamplingContext& ctx,
                    std::span<const float> raw, std::vector<float>& logits, Workspace& ws) {
  const float rep = params.repetition_penalty;
  if (rep != 1.0f && rep > 0.0f) {
    // Computed from the raw logit, so a token seen many times is penalized once (HF semantics)
    // without a "seen" set: writing the same value twice is harmless.
    auto penalize = [&](int32_t t) {
      TANDEM_CHECK(t >= 0 && static_cast<size_t>(t) < raw.size());  // Validated at Submit.
      const float x = Sanitized(raw[t]);
      logits[t] = x > 0.0f ? x / rep : x * rep;
    };
    for (int32_t t : ctx.prompt_tokens) penalize(t);
    for (int32_t t : ctx.output_tokens) penalize(t);
  }
  const float presence = params.presence_penalty;
  const float frequency = params.frequency_penalty;
  if ((presence == 0.0f && frequency == 0.0f) || ctx.output_tokens.empty()) return;
  // Count occurrences by sorting a copy: outputs are short next to the vocabulary.
  std::vector<int32_t>& sorted = ws.output_sorted;
  sorted.assign(ctx.output_tokens.begin(), ctx.output_tokens.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size();) {
    const int32_t t = sorted[i];
    TANDEM_CHECK(t >= 0 && static_cast<size_t>(t) < raw.size());
    size_t j = i;
    while (j < sorted.size() && sorted[j] == t) ++j;
    // vLLM's order: frequency times count, then presence once.
    logits[t] -= frequency * static_cast<float>(j - i);
    logits[t] -= presence;
    i = j;
  }
}

// Where the cumulative weight, in Before order, reaches a target: the position and the
// cumulative weight through it.
struct Crossing {
  size_t index;
  double mass;
};

bool Crosses(double mass, double target, bool inclusive) {
  return inclusive ? mass >= target : mass > target;
}

// The first position i, in Before order, whose cumulative weight c[0] + ... + c[i] reaches
// `target` (>= when `inclusive`, else >). Past the end (only rounding gets there) it answers the
// last position and the total. Reorders `c`: on return c[0, index] hold the index + 1 best.
//
// A weighted quickselect rather than a sort: split the live range at its middle with
// nth_element, add up the better half, keep the half the crossing lies in. Expected O(n) however
// flat the distribution.
Crossing FindCrossing(std::span<Candidate> c, double target, bool inclusive) {
  constexpr size_t kLinearScan = 32;
  size_t lo = 0;
  size_t hi = c.size();
  double before = 0.0;  // Weight of everything ahead of c[lo].
  while (hi - lo > kLinearScan) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(c.begin() + lo, c.begin() + mid, c.begin() + hi, Before);
    double upper = 0.0;
    for (size_t i = lo; i < mid; ++i) upper += c[i].weight;
    if (Crosses(before + upper, target, inclusive)) {
      hi = mid;
    } else {
      before += upper;
      lo = mid;
    }
  }
  std::sort(c.begin() + lo, c.begin() + hi, Before);
  for (size_t i = lo; i < hi; ++i) {
    before += c[i].weight;
    if (Crosses(before, target, inclusive)) return {i, before};
  }
  return {hi - 1, before};
}

// The same question asked of the kHead best candidates only, collected into `head` (sorted) by
// one heap pass. A real model's distribution puts most of its mass on a few tokens, so this
// usually answers at a fraction of FindCrossing's partitioning cost; nullopt when the crossing
// lies further down (or `c` is small enough for FindCrossing to be cheap).
std::optional<Crossing> FindCrossingInHead(std::span<const Candidate> c, double target,
                                           bool inclusive, std::vector<Candidate>* head) {
  if (c.size() <= 4 * kHead) return std::nullopt;
  BestN best(kHead, head);
  for (const Candidate& candidate : c) best.Offer(candidate);
  best.Finish();
  double mass = 0.0;
  for (size_t i = 0; i < head->size(); ++i) {
    mass += (*head)[i].weight;
    if (Crosses(mass, target, inclusive)) return Crossing{i, mass};
  }
  return std::nullopt;
}

// Temperature, min-p, top-k, top-p and the draw, on the penalized `logits`.
int32_t SampleFiltered(std::span<const float> logits, const SamplingContext& ctx, Workspace& ws) {
  const SamplingParams& params = *ctx.params;
  const int32_t best = ArgMax(logits);
  const float m = logits[best];
  // All tokens ruled out (-inf), or an infinite logit: nothing to sample from; take the argmax.
  if (!std::isfinite(m)) return best;
  const float temperature = params.temperature;

  // min-p: p_i >= min_p * p_max  <=>  exp((l_i - m) / T) >= min_p  <=>  l_i >= m + T log(min_p),
  // so the filter runs on logits and exp is only taken for the survivors. -inf tokens have zero
  // probability and are never candidates.
  double threshold = -std::numeric_limits<double>::infinity();
  if (params.min_p > 0.0f) {
    threshold = static_cast<double>(m) + static_cast<double>(temperature) * std::log(params.min_p);
  }
  auto passes = [threshold](float l) {
    return l != kNegInf && static_cast<double>(l) >= threshold;
  };

  // top-k keeps exactly the k first in Before order (ties by lower id).
  std::vector<Candidate>& candidates = ws.candidates;
  const size_t top_k = params.top_k > 0 ? static_cast<size_t>(params.top_k) : 0;
  if (top_k > 0 && top_k <= kMaxHeapTopK && top_k < logits.size()) {
    BestN best_k(top_k, &candidates);
    for (size_t t = 0; t < logits.size(); ++t) {
      if (passes(logits[t])) best_k.Offer({logits[t], static_cast<int32_t>(t), 0.0f});
    }
    best_k.Finish();
  } else {
    candidates.clear();
    for (size_t t = 0; t < logits.size(); ++t) {
      if (passes(logits[t])) candidates.push_back({logits[t], static_cast<int32_t>(t), 0.0f});
    }
    if (top_k > 0 && top_k < candidates.size()) {
      std::nth_element(candidates.begin(), candidates.begin() + static_cast<ptrdiff_t>(top_k),
                       candidates.end(), Before);
      candidates.resize(top_k);
    }
  }
  if (candidates.empty()) candidates.push_back({m, best, 0.0f});  // min_p > 1: keep the best.

  // Unnormalized probabilities: the best token weighs exactly 1. A weight that underflows to 0
  // cannot be drawn; dropping it keeps the rounding fallback of FindCrossing on a token of
  // positive probability.
  double total = 0.0;
  for (Candidate& c : candidates) {
    c.weight = std::exp((c.logit - m) / temperature);
    total += c.weight;
  }
  std::erase_if(candidates, [](const Candidate& c) { return c.weight <= 0.0f; });

  std::span<Candidate> kept(candidates);
  if (params.top_p < 1.0f) {
    // The smallest prefix in Before order holding at least top_p of the mass (at least one
    // token), renormalized.
    const double target = static_cast<double>(params.top_p) * total;
    if (std::optional<Crossing> cut = FindCrossingInHead(kept, target, true, &ws.head_cut)) {
      kept = std::span<Candidate>(ws.head_cut).first(cut->index + 1);
      total = cut->mass;
    } else {
      const Crossing full_cut = FindCrossing(kept, target, /*inclusive=*/true);
      kept = kept.first(full_cut.index + 1);
      total = full_cut.mass;
    }
  }

  // Inverse CDF over the kept tokens in Before order: the first whose cumulative weight exceeds
  // u * total.
  const double target = UniformDraw(ctx.seed, ctx.output_tokens.size()) * total;
  if (std::optional<Crossing> hit = FindCrossingInHead(kept, target, false, &ws.head_draw)) {
    return ws.head_draw[hit->index].token;
  }
  return kept[FindCrossing(kept, target, /*inclusive=*/false).index].token;
}

}  // namespace

// state = SplitMix64Finalize(seed) + (index + 1) * 0x9E3779B97F4A7C15   (mod 2^64)
// bits  = SplitMix64Finalize(state)
// u     = (bits >> 11) * 2^-53
// where SplitMix64Finalize(z) is
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//   return z ^ (z >> 31);
// i.e. output number `index` of a splitmix64 generator whose state starts at the finalized seed.
// Finalizing the seed first keeps the streams of nearby seeds (s, s + 1) unrelated.
double UniformDraw(uint64_t seed, uint64_t index) {
  const uint64_t state = SplitMix64Finalize(seed) + (index + 1) * kSplitMixIncrement;
  const uint64_t bits = SplitMix64Finalize(state);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

GeneratedToken Sample(std::span<const float> logits, const SamplingContext& ctx,
                      std::vector<float>* scratch) {
  TANDEM_CHECK(ctx.params != nullptr);
  TANDEM_CHECK(scratch != nullptr);
  TANDEM_CHECK(!logits.empty());
  const SamplingParams& params = *ctx.params;
  const size_t vocab = logits.size();
  Workspace& ws = LocalWorkspace();

  std::vector<float>& work = *scratch;
  work.resize(vocab);
  std::transform(logits.begin(), logits.end(), work.begin(), Sanitized);

  GeneratedToken result;
  // Logprobs are of the raw logits, so they are taken before `work` is penalized.
  double log_normalizer = 0.0;
  if (params.logprobs) {
    log_normalizer = LogSumExp(work);
    const size_t n = std::min(static_cast<size_t>(std::max(params.top_logprobs, 0)), vocab);
    BestN top(n, &ws.top_logprobs);
    for (size_t t = 0; t < vocab; ++t) top.Offer({work[t], static_cast<int32_t>(t), 0.0f});
    top.Finish();
    result.top_logprobs.reserve(n);
    for (const Candidate& c : ws.top_logprobs) {
      result.top_logprobs.push_back(
          {c.token, static_cast<float>(static_cast<double>(c.logit) - log_normalizer)});
    }
  }

  ApplyPenalties(params, ctx, logits, work, ws);
  result.token = params.greedy() ? ArgMax(work) : SampleFiltered(work, ctx, ws);

  if (params.logprobs) {
    result.logprob =
        static_cast<float>(static_cast<double>(Sanitized(logits[result.token])) - log_normalizer);
  }
  return result;
}

}  // namespace tandem::engine
