// The fast attention kernels of the cuda backend (tensor-core prefill, split-KV decode) against the
// simple paged kernel (LaunchPagedAttention) on the same random inputs: max |fast − ref| /
// max |ref| ≤ 1e-2 and no NaN, over head_dim 64/128, GQA groups 1..16, sliding windows, block
// sizes 16/32, sequences of many lengths in one launch (prefill chunks after a cached prefix,
// decode contexts shorter and longer than a split). Also bit-identical results for a sequence
// alone or in a batch (decode), in one chunk or two (prefill), and under a CUDA graph (decode),
// and a timing print for the Llama-3.1-8B shape (grep "cuda-attention-bench"; printed, not
// asserted). Skips without a device.
//
// Everything the kernels must not read is NaN: other layers' planes, unassigned blocks, slots past
// a sequence's context, the k/v part of the fused qkv rows; outputs are NaN-poisoned before every
// launch.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/cuda/decode_attention.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/prefill_attention.h"

namespace tandem::engine::cuda {
namespace {

constexpr double kMaxRelError = 1e-2;
constexpr uint32_t kSeed = 20240611;
constexpr uint16_t kNanBits = 0xFFFF;

#define CUDA_ASSERT(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

bool HasDevice() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (inputs are finite)
  return static_cast<uint16_t>(u >> 16);
}

float FromBf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Fast deterministic uniform values (splitmix64), to fill hundreds of MiB for the timing runs.
class Uniform {
 public:
  explicit Uniform(uint64_t seed) : state_(seed) {}
  float Next(float lo, float hi) {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * static_cast<float>(z >> 40) / static_cast<float>(1ull << 24);
  }

 private:
  uint64_t state_;
};

// A device array; allocation failures surface as null data() (checked by the callers).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) {
    if (n > 0 && cudaMalloc(&data_, n * sizeof(T)) != cudaSuccess) data_ = nullptr;
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (data_ != nullptr) {
      cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    }
  }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(DeviceArray&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), n_(other.n_) {}
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(n_, other.n_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() const { return data_; }
  size_t size() const { return n_; }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    cudaMemcpy(host.data(), data_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  void Poison() const { cudaMemset(data_, 0xFF, n_ * sizeof(T)); }

 private:
  T* data_ = nullptr;
  size_t n_ = 0;
};

struct Geometry {
  int heads = 8;
  int kv_heads = 8;
  int head_dim = 128;
  int block_size = 16;
  int window = 0;
  int layers = 2;
  int layer = 1;  // the layer under test (the other one is all NaN)

  int64_t TokenElements() const { return int64_t{kv_heads} * head_dim; }
  int64_t PlaneElements() const { return TokenElements() * block_size; }
  int64_t BlockElements() const { return PlaneElements() * 2 * layers; }
  int64_t KOffset() const { return int64_t{layer} * 2 * PlaneElements(); }
  int64_t VOffset() const { return KOffset() + PlaneElements(); }
  int QStride() const { return (heads + 2 * kv_heads) * head_dim; }
  int OutStride() const { return heads * head_dim; }
  float Scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }
};

// The KV pool and block tables of a set of sequences (context lengths), scattered over shuffled
// blocks, plus a fused-qkv activation of `rows` rows.
class Inputs {
 public:
  Inputs(const Geometry& g, const std::vector<int>& contexts, int rows, uint64_t seed) : g_(g) {
    Uniform uniform(seed);
    std::vector<int> blocks_of(contexts.size());
    int num_blocks = 3;  // spares, never referenced: NaN
    for (size_t s = 0; s < contexts.size(); ++s) {
      blocks_of[s] = (contexts[s] + g.block_size - 1) / g.block_size;
      num_blocks += blocks_of[s];
    }
    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(static_cast<uint32_t>(seed)));
    std::vector<uint16_t> pool(static_cast<size_t>(num_blocks) * g.BlockElements(), kNanBits);
    std::vector<int32_t> tables;
    int next = 0;
    for (size_t s = 0; s < contexts.size(); ++s) {
      table_offset_.push_back(static_cast<int32_t>(tables.size()));
      for (int b = 0; b < blocks_of[s]; ++b) {
        const int32_t id = ids[next++];
        tables.push_back(id);
        for (int slot = 0; slot < g.block_size && b * g.block_size + slot < contexts[s]; ++slot) {
          for (const int64_t plane : {g.KOffset(), g.VOffset()}) {
            uint16_t* dst = pool.data() + id * g.BlockElements() + plane + slot * g.TokenElements();
            for (int64_t e = 0; e < g.TokenElements(); ++e) dst[e] = ToBf16(uniform.Next(-1, 1));
          }
        }
      }
    }
    std::vector<uint16_t> q(static_cast<size_t>(rows) * g.QStride(), kNanBits);
    for (int r = 0; r < rows; ++r) {
      for (int e = 0; e < g.heads * g.head_dim; ++e) {
        q[static_cast<size_t>(r) * g.QStride() + e] = ToBf16(uniform.Next(-3, 3));
      }
    }
    rows_ = rows;
    pool_ = DeviceArray<uint16_t>(pool);
    tables_ = DeviceArray<int32_t>(tables);
    q_ = DeviceArray<uint16_t>(q);
    out_ = DeviceArray<uint16_t>(static_cast<size_t>(rows) * g.OutStride());
  }

  bool ok() const { return pool_.data() && tables_.data() && q_.data() && out_.data(); }
  int32_t table_offset(int seq) const { return table_offset_[seq]; }
  int rows() const { return rows_; }

  // The simple kernel over all rows; row r at positions[r] of the sequence whose table starts at
  // table_offset[r].
  std::vector<uint16_t> Reference(const std::vector<int32_t>& positions,
                                  const std::vector<int32_t>& table_offsets) const {
    DeviceArray<int32_t> d_pos(positions);
    DeviceArray<int32_t> d_tab(table_offsets);
    PagedAttentionParams p;
    p.q = q();
    p.q_stride = g_.QStride();
    p.out = out();
    p.kv_cache = kv();
    p.block_elements = g_.BlockElements();
    p.k_offset = g_.KOffset();
    p.v_offset = g_.VOffset();
    p.block_size = g_.block_size;
    p.heads = g_.heads;
    p.kv_heads = g_.kv_heads;
    p.head_dim = g_.head_dim;
    p.rows = static_cast<int>(positions.size());
    p.positions = d_pos.data();
    p.table_offset = d_tab.data();
    p.block_tables = tables_.data();
    p.window = g_.window;
    p.scale = g_.Scale();
    out_.Poison();
    EXPECT_EQ(LaunchPagedAttention(p, nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return out_.Download();
  }

  struct PrefillSeq {
    int row_start = 0;
    int num_rows = 0;
    int start_pos = 0;
    int seq = 0;  // index into the contexts (its block table)
  };
  PrefillAttentionParams PrefillParams() const {
    PrefillAttentionParams p;
    p.q = q();
    p.q_stride = g_.QStride();
    p.out = out();
    p.kv_cache = kv();
    p.block_elements = g_.BlockElements();
    p.k_offset = g_.KOffset();
    p.v_offset = g_.VOffset();
    p.block_size = g_.block_size;
    p.heads = g_.heads;
    p.kv_heads = g_.kv_heads;
    p.head_dim = g_.head_dim;
    p.window = g_.window;
    p.scale = g_.Scale();
    p.block_tables = tables_.data();
    return p;
  }
  // Device metadata of a prefill launch (kept alive with the params).
  struct PrefillLaunch {
    DeviceArray<int32_t> row_start, num_rows, start_pos, table_offset, tiles;
    PrefillAttentionParams params;
  };
  PrefillLaunch MakePrefill(const std::vector<PrefillSeq>& seqs) const {
    std::vector<int32_t> row_start, num_rows, start_pos, table_offset;
    std::vector<std::pair<int, int>> tiles;  // (seq, first row)
    const int tile_rows = PrefillTileRows(g_.head_dim);
    for (size_t s = 0; s < seqs.size(); ++s) {
      row_start.push_back(seqs[s].row_start);
      num_rows.push_back(seqs[s].num_rows);
      start_pos.push_back(seqs[s].start_pos);
      table_offset.push_back(table_offset_[seqs[s].seq]);
      for (int r = 0; r < seqs[s].num_rows; r += tile_rows) tiles.emplace_back(s, r);
    }
    // Heaviest first (most keys to visit): the tiles whose rows sit furthest into a sequence.
    std::stable_sort(tiles.begin(), tiles.end(), [&](const auto& a, const auto& b) {
      return seqs[a.first].start_pos + a.second > seqs[b.first].start_pos + b.second;
    });
    std::vector<int32_t> flat;
    for (const auto& [s, r] : tiles) {
      flat.push_back(s);
      flat.push_back(r);
    }
    PrefillLaunch launch{DeviceArray<int32_t>(row_start), DeviceArray<int32_t>(num_rows),
                         DeviceArray<int32_t>(start_pos), DeviceArray<int32_t>(table_offset),
                         DeviceArray<int32_t>(flat),      PrefillParams()};
    launch.params.seq_row_start = launch.row_start.data();
    launch.params.seq_num_rows = launch.num_rows.data();
    launch.params.seq_start_pos = launch.start_pos.data();
    launch.params.seq_table_offset = launch.table_offset.data();
    launch.params.tiles = launch.tiles.data();
    launch.params.num_tiles = static_cast<int>(tiles.size());
    return launch;
  }
  std::vector<uint16_t> Prefill(const std::vector<PrefillSeq>& seqs) const {
    const PrefillLaunch launch = MakePrefill(seqs);
    out_.Poison();
    EXPECT_EQ(LaunchPrefillAttention(launch.params, nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return out_.Download();
  }

  struct DecodeSeq {
    int row = 0;
    int position = 0;
    int seq = 0;
  };
  struct DecodeLaunch {
    DeviceArray<int32_t> rows, positions, table_offset;
    DeviceArray<float> workspace;
    DecodeAttentionParams params;
  };
  DecodeLaunch MakeDecode(const std::vector<DecodeSeq>& seqs, int split_tokens,
                          int max_splits) const {
    std::vector<int32_t> rows, positions, table_offset;
    for (const DecodeSeq& s : seqs) {
      rows.push_back(s.row);
      positions.push_back(s.position);
      table_offset.push_back(table_offset_[s.seq]);
      max_splits = std::max(max_splits, s.position / split_tokens + 1);
    }
    const int n = static_cast<int>(seqs.size());
    DecodeLaunch launch{
        DeviceArray<int32_t>(rows), DeviceArray<int32_t>(positions),
        DeviceArray<int32_t>(table_offset),
        DeviceArray<float>(DecodeAttentionWorkspaceFloats(n, g_.heads, g_.head_dim, max_splits)),
        DecodeAttentionParams{}};
    DecodeAttentionParams& p = launch.params;
    p.q = q();
    p.q_stride = g_.QStride();
    p.out = out();
    p.kv_cache = kv();
    p.block_elements = g_.BlockElements();
    p.k_offset = g_.KOffset();
    p.v_offset = g_.VOffset();
    p.block_size = g_.block_size;
    p.heads = g_.heads;
    p.kv_heads = g_.kv_heads;
    p.head_dim = g_.head_dim;
    p.window = g_.window;
    p.scale = g_.Scale();
    p.num_seqs = n;
    p.rows = launch.rows.data();
    p.positions = launch.positions.data();
    p.table_offset = launch.table_offset.data();
    p.block_tables = tables_.data();
    p.split_tokens = split_tokens;
    p.max_splits = max_splits;
    p.workspace = launch.workspace.data();
    launch.workspace.Poison();
    return launch;
  }
  // max_splits: at least the sequences' need (more only widens the grid).
  std::vector<uint16_t> Decode(const std::vector<DecodeSeq>& seqs, int split_tokens,
                               int max_splits = 1) const {
    const DecodeLaunch launch = MakeDecode(seqs, split_tokens, max_splits);
    out_.Poison();
    EXPECT_EQ(LaunchDecodeAttention(launch.params, nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return out_.Download();
  }

  const bf16* q() const { return reinterpret_cast<const bf16*>(q_.data()); }
  bf16* out() const { return reinterpret_cast<bf16*>(out_.data()); }
  const bf16* kv() const { return reinterpret_cast<const bf16*>(pool_.data()); }
  const Geometry& geometry() const { return g_; }

 private:
  Geometry g_;
  int rows_ = 0;
  std::vector<int32_t> table_offset_;
  DeviceArray<uint16_t> pool_;
  DeviceArray<int32_t> tables_;
  DeviceArray<uint16_t> q_;
  DeviceArray<uint16_t> out_;
};

// Compares rows [row_begin, row_end) of two [rows, out_stride] bf16 outputs.
void ExpectClose(const std::vector<uint16_t>& got, const std::vector<uint16_t>& ref, int out_stride,
                 int row_begin, int row_end, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size());
  float max_ref = 0, max_err = 0;
  int64_t nan_at = -1, worst = -1;
  for (int64_t k = int64_t{row_begin} * out_stride; k < int64_t{row_end} * out_stride; ++k) {
    const float g = FromBf16(got[k]);
    const float r = FromBf16(ref[k]);
    ASSERT_FALSE(std::isnan(r)) << what << ": reference NaN at " << k;
    if (std::isnan(g) && nan_at < 0) nan_at = k;
    max_ref = std::max(max_ref, std::abs(r));
    if (std::abs(g - r) > max_err) {
      max_err = std::abs(g - r);
      worst = k;
    }
  }
  ASSERT_LT(nan_at, 0) << what << ": NaN at row " << nan_at / out_stride << " col "
                       << nan_at % out_stride;
  ASSERT_GT(max_ref, 0.0f) << what;
  EXPECT_LE(max_err / max_ref, kMaxRelError)
      << what << ": worst at row " << worst / out_stride << " col " << worst % out_stride << " got "
      << FromBf16(got[worst]) << " want " << FromBf16(ref[worst]);
}

void ExpectBitEqualRows(const std::vector<uint16_t>& a, int a_row, const std::vector<uint16_t>& b,
                        int b_row, int rows, int out_stride, const std::string& what) {
  for (int r = 0; r < rows; ++r) {
    const int64_t ia = (int64_t{a_row} + r) * out_stride;
    const int64_t ib = (int64_t{b_row} + r) * out_stride;
    ASSERT_TRUE(std::equal(a.begin() + ia, a.begin() + ia + out_stride, b.begin() + ib))
        << what << ": row " << r << " differs";
  }
}

// (head_dim, (heads, kv_heads), block_size, window)
using Shape = std::tuple<int, std::tuple<int, int>, int, int>;

class CudaAttentionTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    if (!HasDevice()) GTEST_SKIP() << "no cuda device";
  }
  Geometry geometry() const {
    Geometry g;
    std::tuple<int, int> heads;
    std::tie(g.head_dim, heads, g.block_size, g.window) = GetParam();
    std::tie(g.heads, g.kv_heads) = heads;
    return g;
  }
};

TEST_P(CudaAttentionTest, PrefillMatchesSimpleKernel) {
  SCOPED_TRACE("seed=" + std::to_string(kSeed));
  const Geometry g = geometry();
  // (rows, start_pos): a single token, short prompts, a chunk after a cached prefix, long ones,
  // lengths that are not multiples of the tile.
  const std::vector<std::pair<int, int>> chunks = {{1, 0},    {17, 0},   {300, 0}, {200, 1000},
                                                   {1030, 0}, {77, 513}, {1, 700}, {129, 64}};
  std::vector<int> contexts;
  std::vector<Inputs::PrefillSeq> seqs;
  std::vector<int32_t> positions, table_offsets;
  int rows = 0;
  for (const auto& [n, start] : chunks) {
    seqs.push_back({rows, n, start, static_cast<int>(contexts.size())});
    contexts.push_back(start + n);
    rows += n;
  }
  Inputs in(g, contexts, rows, kSeed);
  ASSERT_TRUE(in.ok());
  for (const Inputs::PrefillSeq& s : seqs) {
    for (int r = 0; r < s.num_rows; ++r) {
      positions.push_back(s.start_pos + r);
      table_offsets.push_back(in.table_offset(s.seq));
    }
  }
  const std::vector<uint16_t> ref = in.Reference(positions, table_offsets);
  const std::vector<uint16_t> got = in.Prefill(seqs);
  ExpectClose(got, ref, g.OutStride(), 0, rows, "prefill");
}

TEST_P(CudaAttentionTest, DecodeMatchesSimpleKernel) {
  SCOPED_TRACE("seed=" + std::to_string(kSeed));
  const Geometry g = geometry();
  const std::vector<int> contexts = {1, 17, 64, 65, 128, 129, 300, 1000, 1100, 2};
  Inputs in(g, contexts, static_cast<int>(contexts.size()), kSeed + 1);
  ASSERT_TRUE(in.ok());
  std::vector<Inputs::DecodeSeq> seqs;
  std::vector<int32_t> positions(contexts.size()), table_offsets(contexts.size());
  for (int s = 0; s < static_cast<int>(contexts.size()); ++s) {
    const int row = static_cast<int>(contexts.size()) - 1 - s;  // rows in another order
    seqs.push_back({row, contexts[s] - 1, s});
    positions[row] = contexts[s] - 1;
    table_offsets[row] = in.table_offset(s);
  }
  const std::vector<uint16_t> ref = in.Reference(positions, table_offsets);
  for (const int split : {64, 128}) {
    const std::vector<uint16_t> got = in.Decode(seqs, split);
    ExpectClose(got, ref, g.OutStride(), 0, in.rows(), "decode split " + std::to_string(split));
  }
}

TEST_P(CudaAttentionTest, DecodeIsBatchInvariant) {
  const Geometry g = geometry();
  const std::vector<int> contexts = {700, 1, 300, 1500, 129};
  Inputs in(g, contexts, static_cast<int>(contexts.size()), kSeed + 2);
  ASSERT_TRUE(in.ok());
  std::vector<Inputs::DecodeSeq> batch;
  for (int s = 0; s < static_cast<int>(contexts.size()); ++s)
    batch.push_back({s, contexts[s] - 1, s});
  const std::vector<uint16_t> together = in.Decode(batch, 128);
  for (int s = 0; s < static_cast<int>(contexts.size()); ++s) {
    const std::vector<uint16_t> alone = in.Decode({batch[s]}, 128);
    ExpectBitEqualRows(alone, s, together, s, 1, g.OutStride(), "seq " + std::to_string(s));
    // A wider grid (more splits than the sequence needs) changes nothing either.
    const std::vector<uint16_t> wide = in.Decode({batch[s]}, 128, 40);
    ExpectBitEqualRows(wide, s, together, s, 1, g.OutStride(), "wide seq " + std::to_string(s));
  }
}

TEST_P(CudaAttentionTest, PrefillIsChunkInvariant) {
  const Geometry g = geometry();
  // Sequence 0: a 700-token prompt (rows 0..699), run whole and as 250 + 450 rows; sequence 1
  // (rows 700..799) rides along in the split run.
  const int n = 700, cut = 250;
  Inputs in(g, {n, 400}, n + 100, kSeed + 3);
  ASSERT_TRUE(in.ok());
  const std::vector<uint16_t> whole = in.Prefill({{0, n, 0, 0}});
  const std::vector<uint16_t> split =
      in.Prefill({{0, cut, 0, 0}, {n, 100, 300, 1}, {cut, n - cut, cut, 0}});
  ExpectBitEqualRows(whole, 0, split, 0, n, g.OutStride(), "prompt rows");
}

std::string ShapeName(const ::testing::TestParamInfo<Shape>& info) {
  const auto& [hd, heads_kv, bs, window] = info.param;
  const auto& [heads, kv_heads] = heads_kv;
  return "hd" + std::to_string(hd) + "_h" + std::to_string(heads) + "_kv" +
         std::to_string(kv_heads) + "_bs" + std::to_string(bs) + "_w" + std::to_string(window);
}

// GQA groups 1, 3, 4, 8 and MQA (16 query heads on one kv head).
INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttentionTest,
    ::testing::Combine(::testing::Values(64, 128),
                       ::testing::Values(std::make_tuple(8, 8), std::make_tuple(6, 2),
                                         std::make_tuple(16, 4), std::make_tuple(32, 4),
                                         std::make_tuple(16, 1)),
                       ::testing::Values(16, 32), ::testing::Values(0, 100)),
    ShapeName);

TEST(CudaAttentionGraphTest, DecodeReplaysUnderGraph) {
  if (!HasDevice()) GTEST_SKIP() << "no cuda device";
  Geometry g;
  g.heads = 32;
  g.kv_heads = 8;
  const std::vector<int> contexts = {900, 33, 260};
  Inputs in(g, contexts, 3, kSeed + 4);
  ASSERT_TRUE(in.ok());
  std::vector<Inputs::DecodeSeq> seqs;
  for (int s = 0; s < 3; ++s) seqs.push_back({s, contexts[s] - 1, s});
  const std::vector<uint16_t> direct = in.Decode(seqs, 128);
  const Inputs::DecodeLaunch launch = in.MakeDecode(seqs, 128, 1);
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const cudaError_t launched = LaunchDecodeAttention(launch.params, stream);
  CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  CUDA_ASSERT(launched);
  cudaGraphExec_t exec;
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_ASSERT(cudaMemset(in.out(), 0xFF, sizeof(uint16_t) * 3 * g.OutStride()));
  CUDA_ASSERT(cudaDeviceSynchronize());
  CUDA_ASSERT(cudaGraphLaunch(exec, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  std::vector<uint16_t> replayed(direct.size());
  CUDA_ASSERT(cudaMemcpy(replayed.data(), in.out(), replayed.size() * 2, cudaMemcpyDeviceToHost));
  ExpectBitEqualRows(direct, 0, replayed, 0, 3, g.OutStride(), "graph replay");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(CudaAttentionLaunchTest, UnsupportedShapesAreRefused) {
  // Validation happens before any CUDA call: no device needed.
  PrefillAttentionParams prefill;
  prefill.head_dim = 96;
  prefill.block_size = 16;
  EXPECT_EQ(LaunchPrefillAttention(prefill, nullptr), cudaErrorNotSupported);
  prefill.head_dim = 128;
  prefill.block_size = 24;
  EXPECT_EQ(LaunchPrefillAttention(prefill, nullptr), cudaErrorNotSupported);
  EXPECT_EQ(PrefillTileRows(96), 0);
  EXPECT_GT(PrefillTileRows(64), 0);

  DecodeAttentionParams decode;
  decode.head_dim = 80;
  decode.block_size = 16;
  decode.heads = 8;
  decode.kv_heads = 8;
  EXPECT_EQ(LaunchDecodeAttention(decode, nullptr), cudaErrorNotSupported);
  decode.head_dim = 64;
  decode.heads = 32;
  decode.kv_heads = 1;  // group of 32
  EXPECT_EQ(LaunchDecodeAttention(decode, nullptr), cudaErrorNotSupported);
}

// Timing of the Llama-3.1-8B attention shape (32 query heads, 8 kv heads, head_dim 128,
// block_size 16): printed, not asserted.
template <typename Launch>
float MedianMs(Launch&& launch) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  launch();  // warm-up
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start);
    launch();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

TEST(CudaAttentionBench, Llama8bShape) {
  if (!HasDevice()) GTEST_SKIP() << "no cuda device";
  Geometry g;
  g.heads = 32;
  g.kv_heads = 8;
  g.head_dim = 128;
  g.layers = 1;
  g.layer = 0;
  for (const int n : {2048, 8192}) {
    Inputs in(g, {n}, n, kSeed + 5);
    ASSERT_TRUE(in.ok());
    const Inputs::PrefillLaunch launch = in.MakePrefill({{0, n, 0, 0}});
    const float ms = MedianMs([&] { (void)LaunchPrefillAttention(launch.params, nullptr); });
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const double flops = 2.0 * 2.0 * n * n / 2.0 * g.head_dim * g.heads;
    std::printf("cuda-attention-bench prefill n=%d: %.3f ms, %.1f TFLOP/s\n", n, ms,
                flops / (ms * 1e-3) / 1e12);
  }
  for (const auto& [batch, context] : {std::make_pair(64, 512), std::make_pair(1, 4096)}) {
    Inputs in(g, std::vector<int>(batch, context), batch, kSeed + 6);
    ASSERT_TRUE(in.ok());
    std::vector<Inputs::DecodeSeq> seqs;
    for (int s = 0; s < batch; ++s) seqs.push_back({s, context - 1, s});
    for (const int split : {128, 256}) {
      const Inputs::DecodeLaunch launch = in.MakeDecode(seqs, split, 1);
      const float ms = MedianMs([&] { (void)LaunchDecodeAttention(launch.params, nullptr); });
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const double bytes = 2.0 * batch * context * g.TokenElements() * 2;
      std::printf("cuda-attention-bench decode batch=%d context=%d split=%d: %.1f us, %.0f GB/s\n",
                  batch, context, split, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
    }
  }
}

}  // namespace
}  // namespace tandem::engine::cuda
