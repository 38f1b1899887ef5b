// Warp-level tensor-core and async-copy primitives (sm_80+ PTX) shared by the fast attention
// kernels: cp.async 16-byte copies (zero-filling when the source is invalid), ldmatrix,
// mma.sync m16n8k16 bf16 → fp32, and the XOR swizzle of the [rows][head_dim] bf16 tiles they keep
// in shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tandem::engine::cuda {

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes global → shared, or writes 16 zero bytes when !valid (src is then not read, but
// must still be a mapped address).
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes)
               : "memory");
}

// Copies 4 bytes global → shared (no zero fill: issue it only for valid sources).
__device__ __forceinline__ void CpAsync4(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// d += a · b for one m16n8k16 tile: a row-major 16×16, b column-major 16×8, fp32 accumulators.
__device__ __forceinline__ void MmaBf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair, `lo` in the low half (the lower column of an mma fragment).
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// 2^x (ex2.approx: exact 0 for -inf, deterministic).
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a [rows][kHeadDim] bf16 tile whose chunks
// are XOR-swizzled by the row's low three bits, so that ldmatrix over 8 consecutive rows and the
// cp.async pattern of the loaders (16 consecutive rows, one chunk) hit distinct banks.
template <int kHeadDim>
__device__ __forceinline__ uint32_t SwizzledOffset(int row, int chunk) {
  return static_cast<uint32_t>(row * kHeadDim * 2 + ((chunk ^ (row & 7)) << 4));
}

// SwizzledOffset for one lane's ldmatrix rows, all of which have row & 7 == lane & 7, and chunk
// 2k + hi (hi fixed per lane): offset = row * 2 * kHeadDim + (*this)(k). Only k & 3 meets the
// swizzle, so four per-lane values cover every k and the rest folds into immediate offsets
// (keeps the unrolled loops from holding one address register per (k, tile)).
class LaneSwizzle {
 public:
  __device__ __forceinline__ LaneSwizzle(int lane, int hi) {
    const int x2 = (lane & 7) >> 1;
    const uint32_t b0 = static_cast<uint32_t>((hi ^ lane) & 1) << 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) offset_[j] = (static_cast<uint32_t>(j ^ x2) << 5) | b0;
  }
  __device__ __forceinline__ uint32_t operator()(int k) const {
    return (static_cast<uint32_t>(k & ~3) << 5) + offset_[k & 3];
  }

 private:
  uint32_t offset_[4];
};

}  // namespace tandem::engine::cuda
