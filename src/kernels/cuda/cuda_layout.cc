// Host-side repack and unpack of the CUDA weight layout (pictured in cuda_layout.h).
#include "kernels/cuda/cuda_layout.h"

#include <cstring>

namespace lutq::kernels::cuda {
namespace {

size_t align256(size_t v) { return (v + 255) / 256 * 256; }

// The 32 bits of plane i, row r, word w from the canonical bytes (LSB first along k).
uint32_t canonical_word(const format::BcqMatrix& w, int i, int64_t r, int64_t word) {
  const uint8_t* row = w.bits.data() + (i * w.n + r) * w.row_bytes() + word * 4;
  return static_cast<uint32_t>(row[0]) | static_cast<uint32_t>(row[1]) << 8 | static_cast<uint32_t>(row[2]) << 16 |
         static_cast<uint32_t>(row[3]) << 24;
}

}  // namespace

Layout layout_of(const format::BcqMatrix& w) {
  Layout l;
  const int64_t q = w.cfg.q;
  const bool per_oc = w.cfg.orientation == format::Orientation::kPerOC;
  l.tiles = (w.n + kTileRows - 1) / kTileRows;
  l.words = w.k / kWordBits;
  l.groups = per_oc ? w.k / w.cfg.g : w.n / w.cfg.g;
  const int64_t scale_sets = per_oc ? l.tiles * l.groups * kTileRows : l.groups * w.k;
  l.bits_offset = 0;
  l.alpha_offset = align256(static_cast<size_t>(l.tiles * l.words * q * kTileRows) * sizeof(uint32_t));
  l.offset_offset = l.alpha_offset + align256(static_cast<size_t>(scale_sets * q) * sizeof(uint16_t));
  l.bytes = l.offset_offset + (w.cfg.has_offset ? align256(static_cast<size_t>(scale_sets) * sizeof(uint16_t)) : 0);
  return l;
}

AlignedBuffer repack_layout(const format::BcqMatrix& w) {
  const Layout l = layout_of(w);
  const int q = w.cfg.q;
  AlignedBuffer buf(l.bytes);
  auto* bits = reinterpret_cast<uint32_t*>(buf.data() + l.bits_offset);
  auto* alpha = reinterpret_cast<uint16_t*>(buf.data() + l.alpha_offset);
  auto* offset = reinterpret_cast<uint16_t*>(buf.data() + l.offset_offset);
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t t = r / kTileRows;
    const int64_t lane = r % kTileRows;
    for (int64_t word = 0; word < l.words; ++word) {
      for (int i = 0; i < q; ++i) bits[((t * l.words + word) * q + i) * kTileRows + lane] = canonical_word(w, i, r, word);
    }
  }
  if (w.cfg.orientation == format::Orientation::kPerOC) {
    for (int64_t r = 0; r < w.n; ++r) {
      const int64_t t = r / kTileRows;
      const int64_t lane = r % kTileRows;
      for (int64_t grp = 0; grp < l.groups; ++grp) {
        const int64_t set = r * l.groups + grp;
        for (int i = 0; i < q; ++i) {
          alpha[((t * l.groups + grp) * q + i) * kTileRows + lane] = w.alpha[static_cast<size_t>(set * q + i)];
        }
        if (w.cfg.has_offset) offset[(t * l.groups + grp) * kTileRows + lane] = w.offset[static_cast<size_t>(set)];
      }
    }
  } else {
    std::memcpy(alpha, w.alpha.data(), w.alpha.size() * sizeof(uint16_t));
    if (w.cfg.has_offset) std::memcpy(offset, w.offset.data(), w.offset.size() * sizeof(uint16_t));
  }
  return buf;
}

format::BcqMatrix unpack_layout(const format::BcqMatrix& shape, const uint8_t* data) {
  format::BcqMatrix w;
  w.n = shape.n;
  w.k = shape.k;
  w.cfg = shape.cfg;
  const Layout l = layout_of(w);
  const int q = w.cfg.q;
  const auto* bits = reinterpret_cast<const uint32_t*>(data + l.bits_offset);
  const auto* alpha = reinterpret_cast<const uint16_t*>(data + l.alpha_offset);
  const auto* offset = reinterpret_cast<const uint16_t*>(data + l.offset_offset);
  w.bits.assign(static_cast<size_t>(q * w.n * w.row_bytes()), 0);
  w.alpha.assign(static_cast<size_t>(w.num_scale_sets() * q), 0);
  if (w.cfg.has_offset) w.offset.assign(static_cast<size_t>(w.num_scale_sets()), 0);
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t t = r / kTileRows;
    const int64_t lane = r % kTileRows;
    for (int64_t word = 0; word < l.words; ++word) {
      for (int i = 0; i < q; ++i) {
        const uint32_t v = bits[((t * l.words + word) * q + i) * kTileRows + lane];
        uint8_t* row = w.bits.data() + (i * w.n + r) * w.row_bytes() + word * 4;
        for (int b = 0; b < 4; ++b) row[b] = static_cast<uint8_t>(v >> (8 * b));
      }
    }
  }
  if (w.cfg.orientation == format::Orientation::kPerOC) {
    for (int64_t r = 0; r < w.n; ++r) {
      const int64_t t = r / kTileRows;
      const int64_t lane = r % kTileRows;
      for (int64_t grp = 0; grp < l.groups; ++grp) {
        const int64_t set = r * l.groups + grp;
        for (int i = 0; i < q; ++i) {
          w.alpha[static_cast<size_t>(set * q + i)] = alpha[((t * l.groups + grp) * q + i) * kTileRows + lane];
        }
        if (w.cfg.has_offset) w.offset[static_cast<size_t>(set)] = offset[(t * l.groups + grp) * kTileRows + lane];
      }
    }
  } else {
    std::memcpy(w.alpha.data(), alpha, w.alpha.size() * sizeof(uint16_t));
    if (w.cfg.has_offset) std::memcpy(w.offset.data(), offset, w.offset.size() * sizeof(uint16_t));
  }
  return w;
}

}  // namespace lutq::kernels::cuda
