// The CUDA backend's weight layout (docs/kernels.md, "CUDA"), computed on the host at load:
// repack (canonical -> GPU layout) and its exact inverse, plus the section offsets the kernels
// index with. Pure C++: the round trip is tested without a GPU.
//
//   rows are cut into tiles of 32 (one warp lane per row), n padded to a tile with zero rows;
//   bits:   uint32 [tile][word = k/32][plane][lane]   (bit b of a word = activation 32·word + b)
//   per-OC: alpha  fp16 [tile][group = k/g][plane][lane],  offset fp16 [tile][group][lane]
//   per-IC: alpha  fp16 [n/g][k][plane] and offset fp16 [n/g][k]   (the canonical order: the
//           kernels index them by column, and every row tile lies inside one row block)
//
// A warp reading one (tile, word, plane) reads 128 contiguous bytes, so every weight load of the
// LUT kernel (lane = row) is one fully used, coalesced transaction.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/aligned_buffer.h"
#include "format/bcq_matrix.h"

namespace lutq::kernels::cuda {

constexpr int64_t kTileRows = 32;  // rows per tile = lanes per warp
constexpr int64_t kWordBits = 32;  // activations per bit word

// Sizes and byte offsets of the sections of one matrix's layout (each section 256-byte aligned).
struct Layout {
  int64_t tiles = 0;  // ceil(n / 32)
  int64_t words = 0;  // k / 32
  int64_t groups = 0;  // per-OC: k / g; per-IC: n / g
  size_t bits_offset = 0;
  size_t alpha_offset = 0;
  size_t offset_offset = 0;  // == bytes when the matrix has no offset
  size_t bytes = 0;
};

// Precondition: format::validate(w) passed and w.k % 32 == 0 (cuda_check).
Layout layout_of(const format::BcqMatrix& w);

// Canonical -> layout (zero-filled padding rows).
AlignedBuffer repack_layout(const format::BcqMatrix& w);

// Layout -> canonical; `shape` supplies n, k and the configuration (its buffers are ignored).
format::BcqMatrix unpack_layout(const format::BcqMatrix& shape, const uint8_t* data);

}  // namespace lutq::kernels::cuda
