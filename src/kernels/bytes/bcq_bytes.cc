// The byte-code path: detection, policy, packing, unpacking and the scalar spec (bcq_bytes.h;
// docs/kernels.md "The byte-code path").
#include "kernels/bytes/bcq_bytes.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace lutq::kernels {

bool bcq_bytes_uniform(const format::BcqMatrix& w) { return w.cfg.q >= 5 && bcq_uniform_grid(w); }

bool bcq_uniform_grid(const format::BcqMatrix& w) {
  const format::BcqConfig& c = w.cfg;
  if (c.orientation != format::Orientation::kPerOC || !c.has_offset || c.q < 1 || c.q > 8) return false;
  // g <= 2^16: |Σ xq·code| <= g·127·255 stays below 2^31.
  if (c.g % 4 != 0 || c.g > 65536 || w.k % 4 != 0 || w.n < 1) return false;
  const int64_t sets = w.n * w.num_groups();
  for (int64_t s = 0; s < sets; ++s) {
    const float a0 = fp16_to_fp32(w.alpha[static_cast<size_t>(s * c.q)]);
    if (!std::isfinite(a0) || !std::isfinite(fp16_to_fp32(w.offset[static_cast<size_t>(s)]))) return false;
    for (int i = 1; i < c.q; ++i) {
      if (fp16_to_fp32(w.alpha[static_cast<size_t>(s * c.q + i)]) != std::ldexp(a0, i)) return false;
    }
  }
  return true;
}

ByteKernel byte_kernel_for(Isa isa, Precision precision, const CpuFeatures& cpu) {
  if (precision != Precision::kFast) return ByteKernel::kNone;
  if (isa == Isa::kAvx512 && cpu.avx512 && cpu.avx512_vnni) return ByteKernel::kAvx512;
  if (isa == Isa::kAvx2 && cpu.avx2) return ByteKernel::kAvx2;
  return ByteKernel::kNone;
}

bool use_byte_path(const format::BcqMatrix& w, Isa isa, Precision precision, const CpuFeatures& cpu) {
  return byte_kernel_for(isa, precision, cpu) != ByteKernel::kNone && bcq_bytes_uniform(w);
}

namespace {

// The codes of elements (r, 8b .. 8b+7): byte e of the result holds element 8b+e's plane bits
// (bit i = plane i). Byte i of x is plane i's byte b; the three steps transpose the 8x8 bit
// matrix (bit j of byte i <-> bit i of byte j).
uint64_t element_codes8(const format::BcqMatrix& w, int64_t r, int64_t b) {
  uint64_t x = 0;
  for (int i = 0; i < w.cfg.q; ++i) {
    x |= static_cast<uint64_t>(w.bits[static_cast<size_t>((i * w.n + r) * w.row_bytes() + b)]) << (8 * i);
  }
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
  x = x ^ t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
  x = x ^ t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
  return x ^ t ^ (t << 28);
}

}  // namespace

BcqBytesPacked pack_bcq_bytes(const format::BcqMatrix& w) {
  BcqBytesPacked p;
  p.n = w.n;
  p.k = w.k;
  p.g = w.cfg.g;
  p.q = w.cfg.q;
  p.tiles = (w.n + kBytesTileRows - 1) / kBytesTileRows;
  p.groups = w.k / w.cfg.g;
  // q <= 4: nibbles, written in place (byte b of a quad's 32 holds quad bytes b in its low half
  // and b + 32, rows 8-15 of the tile, in its high half); else a byte per code.
  const bool nibbles = p.q <= 4;
  const int64_t quad_bytes = nibbles ? 32 : 64;
  p.codes = AlignedBuffer(static_cast<size_t>(p.tiles * (w.k / 4) * quad_bytes));
  p.scales.assign(static_cast<size_t>(p.tiles * p.groups * 2 * kBytesTileRows), 0.0f);
  p.alpha0.resize(static_cast<size_t>(w.n * p.groups));
  p.zero.resize(p.alpha0.size());
  const float top = static_cast<float>((1 << p.q) - 1);
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t tile = r / kBytesTileRows, row = r % kBytesTileRows;
    for (int64_t j = 0; j < p.groups; ++j) {
      const size_t set = static_cast<size_t>(r * p.groups + j);
      p.alpha0[set] = w.alpha[set * static_cast<size_t>(p.q)];
      p.zero[set] = w.offset[set];
      const float a0 = fp16_to_fp32(p.alpha0[set]), z = fp16_to_fp32(p.zero[set]);
      float* sc = p.scales.data() + (tile * p.groups + j) * 2 * kBytesTileRows;
      sc[row] = 2.0f * a0;
      sc[kBytesTileRows + row] = std::fma(-top, a0, z);
    }
    const int shift = nibbles && row >= 8 ? 4 : 0;
    uint8_t* out = p.codes.data() + tile * (w.k / 4) * quad_bytes + (nibbles ? row % 8 : row) * 4;
    const auto put = [&](int64_t c, unsigned code) { out[(c / 4) * quad_bytes + c % 4] |= static_cast<uint8_t>(code << shift); };
    int64_t c = 0;
    for (; c + 8 <= w.k; c += 8) {  // eight codes at a time: an 8x8 bit transpose of the plane bytes,
      const uint64_t codes = element_codes8(w, r, c / 8);  // two quads' 4 bytes (codes <= 15 shift whole)
      for (int half = 0; half < 2; ++half) {
        uint8_t* at = out + (c / 4 + half) * quad_bytes;
        uint32_t word;
        std::memcpy(&word, at, 4);
        word |= static_cast<uint32_t>(codes >> (32 * half)) << shift;
        std::memcpy(at, &word, 4);
      }
    }
    for (; c < w.k; ++c) {
      unsigned code = 0;
      for (int i = 0; i < p.q; ++i) code |= static_cast<unsigned>(w.bit(i, r, c)) << i;
      put(c, code);
    }
  }
  return p;
}

uint8_t BcqBytesPacked::code(int64_t r, int64_t c) const {
  const int64_t tile = r / kBytesTileRows, row = r % kBytesTileRows, at = row * 4 + c % 4;
  const int64_t quad = tile * (k / 4) + c / 4;
  if (q <= 4) return static_cast<uint8_t>((codes.data()[quad * 32 + at % 32] >> (at < 32 ? 0 : 4)) & 0x0F);
  return codes.data()[quad * 64 + at];
}

int64_t BcqBytesPacked::bytes() const {
  return static_cast<int64_t>(codes.size() + scales.size() * sizeof(float));
}

format::BcqMatrix unpack_bcq_bytes(const BcqBytesPacked& p) {
  format::BcqMatrix w;
  w.n = p.n;
  w.k = p.k;
  w.cfg.q = p.q;
  w.cfg.g = p.g;
  w.cfg.orientation = format::Orientation::kPerOC;
  w.cfg.has_offset = true;
  w.bits.assign(static_cast<size_t>(p.q * p.n * w.row_bytes()), 0);
  w.alpha.resize(static_cast<size_t>(p.n * p.groups * p.q));
  w.offset = p.zero;
  for (size_t s = 0; s < p.alpha0.size(); ++s) {
    const float a0 = fp16_to_fp32(p.alpha0[s]);
    uint16_t* alpha = w.alpha.data() + s * static_cast<size_t>(p.q);
    for (int i = 0; i < p.q; ++i) alpha[i] = fp32_to_fp16(std::ldexp(a0, i));
  }
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t c = 0; c < p.k; ++c) {
      const int code = p.code(r, c);
      for (int i = 0; i < p.q; ++i) {
        if (((code >> i) & 1) == 0) continue;
        w.bits[static_cast<size_t>((i * p.n + r) * w.row_bytes() + c / 8)] |= static_cast<uint8_t>(1u << (c % 8));
      }
    }
  }
  return w;
}

void bcq_bytes_gemm_ref(const BcqBytesPacked& w, const QuantizedActs& xa, float* y) {
  for (int64_t t = 0; t < xa.m; ++t) {
    for (int64_t r = 0; r < w.n; ++r) {
      const int64_t tile = r / kBytesTileRows, row = r % kBytesTileRows;
      float acc = 0.0f;
      for (int64_t j = 0; j < w.groups; ++j) {
        int32_t isum = 0;
        for (int64_t c = j * w.g; c < (j + 1) * w.g; ++c) {
          isum += static_cast<int32_t>(xa.xq[static_cast<size_t>(t * xa.stride + c)]) * w.code(r, c);
        }
        const size_t cell = static_cast<size_t>(t * xa.groups + j);
        const int32_t ssum = xa.corr[cell] / -128;
        const float* sc = w.scales.data() + (tile * w.groups + j) * 2 * kBytesTileRows;
        float v = sc[row] * static_cast<float>(isum);
        v = std::fma(sc[kBytesTileRows + row], static_cast<float>(ssum), v);
        acc = std::fma(v, xa.sx[cell], acc);
      }
      y[t * w.n + r] = acc;
    }
  }
}

void bcq_bytes_gemm(const BcqBytesPacked& w, const float* x, int64_t m, float* y, ThreadPool& pool, ByteKernel kernel) {
  // (The AVX-512 quantizer's precondition is the int8 path's, more than this kernel needs.)
  const QuantizedActs xa = kernel == ByteKernel::kAvx2 ? quantize_acts_avx2(x, m, w.k, w.g) : quantize_acts(x, m, w.k, w.g);
  switch (kernel) {
    case ByteKernel::kAvx512:  // bytes only: a nibble copy (q <= 4) goes to the spec
      if (w.q <= 4) {
        bcq_bytes_gemm_ref(w, xa, y);
        break;
      }
      bcq_bytes_gemm_avx512(w, xa, y, pool);
      break;
    case ByteKernel::kAvx2:
      bcq_bytes_gemm_avx2(w, xa, y, pool);
      break;
    case ByteKernel::kNone:
      bcq_bytes_gemm_ref(w, xa, y);
      break;
  }
}

}  // namespace lutq::kernels
