// The int8 GEMM path: packing, activation quantization, the scalar spec and the policy
// (bcq_int8.h; docs/kernels.md "The int8 GEMM path").
#include "kernels/int8/bcq_int8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/fp16.h"

namespace lutq::kernels {

const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::kLut:
      return "lut";
    case GemmPath::kInt8Gemm:
      return "int8";
    case GemmPath::kAuto:
      return "auto";
  }
  return "?";
}

bool bcq_int8_supported(const format::BcqMatrix& w) {
  return w.cfg.orientation == format::Orientation::kPerOC && w.cfg.q <= 4 && w.cfg.g % 4 == 0 && w.k % 4 == 0;
}

// Thresholds measured with `lutq bench-kernels --path lut,int8` (docs/kernels.md "Policy").
GemmPath choose_path(int64_t m, int64_t n, int64_t k, int q, int64_t g, format::Orientation orientation, Isa isa,
                     Precision precision, bool amx, bool uniform) {
  // avx2: the int8 kernel (LUTQ_GEMM_PATH=int8) measured 1.3-1.5x slower than the LUT at every
  // m on Zen 3 (4096x4096 q4 g128, 1 thread, hot: m = 128 62 against 47 ms, m = 8 5.3 against
  // 3.3): one vpmaddwd per cycle there is 16 multiply-adds per cycle, what the LUT already
  // reaches at q = 4 and below its rate at q <= 3 (docs/kernels.md "The AVX2 int8 kernel").
  // Uniform grids on avx2 (nibble codes x s8 by vpmaddubsw, int16 sums over several quads: up to
  // 32 multiply-adds per cycle on Zen 3): on Zen 3 (4096x4096 and 4096x14336 g128, 1 thread, hot
  // and DRAM) ahead of the LUT from m = 2 at q = 4 (1.3-1.7x at m = 2-8) and from m = 3 at q = 3;
  // at q = 2 within ~1.1x either way up to m = 16 (the LUT's cost per row falls with q, this
  // kernel's does not), so q <= 2 stays on the LUT and is not packed; m = 1 stays on the LUT
  // (1.2x slower on 1 thread).
  if (precision != Precision::kFast || (isa != Isa::kAvx512 && !(isa == Isa::kAvx2 && uniform))) return GemmPath::kLut;
  if (orientation != format::Orientation::kPerOC || q > 4 || g % 4 != 0 || k % 4 != 0 || n < 1) return GemmPath::kLut;
  if (isa == Isa::kAvx2) {
    constexpr int64_t kUniformFrom[5] = {0, 0, 0, 3, 2};  // 0: never
    return kUniformFrom[q] != 0 && m >= kUniformFrom[q] ? GemmPath::kInt8Gemm : GemmPath::kLut;
  }
  // Measured on Zen 4 (4096x4096, g = 128, 1 thread, hot): the int8 path pays a per-call
  // expansion (~0.4 ms at q = 2..4, m-independent) and then ~8 vpdpbusd per 512 weights per row,
  // against the LUT's 4q instructions per 512 weights per row; at q <= 2 the LUT does per row
  // what the int8 path does and never loses.
  // With AMX (Xeon, 4096x14336 g128, 1 thread, hot; docs/kernels.md "AMX") the kernel costs
  // ~2.4-2.9 ms at any m up to 16 (expansion-bound) against the LUT's ~0.3-0.65q ms per row:
  // crossovers near m = 4.5 (q = 4), 5.5 (q = 3), 7 (q = 2), 14 (q = 1).
  if (amx && bcq_int8_amx_supported(g)) {
    constexpr int64_t kAmxFrom[5] = {0, 16, 8, 6, 5};
    return m >= kAmxFrom[q] ? GemmPath::kInt8Gemm : GemmPath::kLut;
  }
  // Without AMX, Zen 5 moved the VNNI thresholds up (docs/kernels.md "Policy"): end to end on
  // the 1.5B (RTN g128, 1 and 2 threads) the int8 path was even or behind at m = 16 and up to 1.9x
  // slower at m = 8 (2 threads), even or ahead at m = 32 and 1.2-1.5x ahead from m = 64, at q = 3
  // and 4 alike. Zen 4's kernel grid had it ahead from m = 8 (q = 4) and 16 (q = 3) by 1.1-1.3x:
  // m = 32 for both gives up that gain there and never loses much on either.
  if (q <= 2) return GemmPath::kLut;
  return m >= 32 ? GemmPath::kInt8Gemm : GemmPath::kLut;
}

namespace {

// The 2^q levels of one (row, group), rounded to int8 with the group's scale; returns s_w.
float round_levels(const format::BcqMatrix& w, int64_t r, int64_t j, int8_t* out) {
  const int q = w.cfg.q;
  const int64_t set = r * w.num_groups() + j;
  const float z = w.cfg.has_offset ? fp16_to_fp32(w.offset[static_cast<size_t>(set)]) : 0.0f;
  float lv[16];
  float amax = 0.0f;
  for (int code = 0; code < (1 << q); ++code) {
    float v = 0.0f;
    for (int i = 0; i < q; ++i) {
      const float a = fp16_to_fp32(w.alpha[static_cast<size_t>(set * q + i)]);
      v += ((code >> i) & 1) != 0 ? a : -a;
    }
    v += z;
    lv[code] = v;
    amax = std::max(amax, std::fabs(v));
  }
  if (!(amax > 0.0f)) {
    std::fill(out, out + (1 << q), int8_t{0});
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  for (int code = 0; code < (1 << q); ++code) {
    out[code] = static_cast<int8_t>(std::clamp(std::nearbyint(lv[code] * inv), -127.0f, 127.0f));
  }
  return amax / 127.0f;
}

// Where column c of row r sits in BcqInt8Packed::row_codes (layout in bcq_int8.h): the byte and
// the bit its code starts at. Columns c..c+7 with c % 8 == 0 sit in eight consecutive bytes at
// the same bit.
struct RowCodeSpot {
  int64_t byte = 0;
  int shift = 0;
};

RowCodeSpot row_code_spot(const BcqInt8Packed& p, int64_t r, int64_t c) {
  const int64_t per_byte = p.codes_per_byte(), span = 64 / per_byte, cg = c % p.g;
  const int64_t tile = r / kInt8TileRows, row = r % kInt8TileRows;
  return {((tile * p.groups + c / p.g) * kInt8TileRows + row) * (p.g / per_byte) + (cg / 64) * span + cg % span,
          static_cast<int>(((cg % 64) / span) * (8 / per_byte))};
}

// p.row_codes from w's planes (p's shape fields set). Eight columns at a time: their codes are
// the planes' bytes spread to one bit per nibble and shifted to the plane's bit.
AlignedBuffer pack_row_codes(const format::BcqMatrix& w, const BcqInt8Packed& p) {
  AlignedBuffer codes(static_cast<size_t>(p.tiles * kInt8TileRows * (w.k / p.codes_per_byte())));  // zeroed
  std::array<uint32_t, 256> spread{};  // bit t of a byte -> bit 4t
  for (uint32_t v = 0; v < 256; ++v) {
    for (int t = 0; t < 8; ++t) spread[v] |= ((v >> t) & 1u) << (4 * t);
  }
  for (int64_t r = 0; r < w.n; ++r) {
    for (int64_t c0 = 0; c0 < w.k; c0 += 8) {
      uint32_t nibbles = 0;  // nibble t: the code of column c0 + t
      for (int i = 0; i < w.cfg.q; ++i) nibbles |= spread[w.bits.data()[(i * w.n + r) * w.row_bytes() + c0 / 8]] << i;
      const RowCodeSpot spot = row_code_spot(p, r, c0);
      uint8_t* at = codes.data() + spot.byte;
      for (int t = 0; t < 8; ++t) at[t] = static_cast<uint8_t>(at[t] | (((nibbles >> (4 * t)) & 0xFu) << spot.shift));
    }
  }
  return codes;
}

}  // namespace

BcqInt8Packed pack_bcq_int8(const format::BcqMatrix& w, Int8Codes codes) {
  const bool rows = codes == Int8Codes::kRows, quads = !rows;
  BcqInt8Packed p;
  p.n = w.n;
  p.k = w.k;
  p.g = w.cfg.g;
  p.q = w.cfg.q;
  p.tiles = (w.n + kInt8TileRows - 1) / kInt8TileRows;
  p.groups = w.k / w.cfg.g;
  p.lut_bytes = std::max<int64_t>(64, kInt8TileRows << p.q);
  if (quads) p.masks = AlignedBuffer(static_cast<size_t>(p.tiles * (w.k / 4) * p.q) * sizeof(uint64_t));
  p.luts = AlignedBuffer(static_cast<size_t>(p.tiles * p.groups * p.lut_bytes + 16));
  std::fill(p.luts.data(), p.luts.data() + p.luts.size(), uint8_t{128});  // padding rows: level 0
  p.ws.assign(static_cast<size_t>(p.tiles * p.groups * kInt8TileRows), 0.0f);
  for (int64_t r = 0; r < w.n; ++r) {
    const int64_t tile = r / kInt8TileRows, row = r % kInt8TileRows;
    for (int64_t j = 0; j < p.groups; ++j) {
      const size_t cell = static_cast<size_t>((tile * p.groups + j) * kInt8TileRows + row);
      int8_t lv[16];
      p.ws[cell] = round_levels(w, r, j, lv);
      uint8_t* lut = p.luts.data() + (tile * p.groups + j) * p.lut_bytes + (row << p.q);
      for (int code = 0; code < (1 << p.q); ++code) lut[code] = static_cast<uint8_t>(lv[code] + 128);
    }
    // A quad's 4 bits of a plane are one nibble of the canonical row (bit c % 8, LSB first).
    for (int i = 0; quads && i < p.q; ++i) {
      const uint8_t* bits = w.bits.data() + (i * w.n + r) * w.row_bytes();
      uint64_t* masks = p.masks.as<uint64_t>() + tile * (w.k / 4) * p.q + i;
      for (int64_t d = 0; d < w.k / 4; ++d) {
        const uint64_t nibble = (bits[d / 2] >> (4 * (d % 2))) & 0xFu;
        masks[d * p.q] |= nibble << (4 * row);
      }
    }
  }
  if (rows) p.row_codes = pack_row_codes(w, p);
  return p;
}

int8_t BcqInt8Packed::level(int64_t r, int64_t c) const {
  const int64_t tile = r / kInt8TileRows, row = r % kInt8TileRows;
  int code = 0;
  if (has_quads()) {
    for (int i = 0; i < q; ++i) {
      const uint64_t mask = mask_words()[static_cast<size_t>((tile * (k / 4) + c / 4) * q + i)];
      code |= static_cast<int>((mask >> (4 * row + c % 4)) & 1u) << i;
    }
  } else {
    const RowCodeSpot spot = row_code_spot(*this, r, c);
    code = (row_codes.data()[spot.byte] >> spot.shift) & ((1 << q) - 1);
  }
  return static_cast<int8_t>(luts.data()[(tile * groups + c / g) * lut_bytes + (row << q) + code] - 128);
}

int64_t BcqInt8Packed::bytes() const {
  return static_cast<int64_t>(masks.size() + luts.size() + ws.size() * 4 + row_codes.size());
}

QuantizedActs zeroed_acts(int64_t m, int64_t k, int64_t g) {
  QuantizedActs a;
  a.m = m;
  a.k = k;
  a.groups = k / g;
  a.stride = k + 64;
  a.xq.assign(static_cast<size_t>((m + 15) / 16 * 16 * a.stride), 0);
  a.sx.assign(static_cast<size_t>(m * a.groups), 0.0f);
  a.corr.assign(a.sx.size(), 0);
  return a;
}

QuantizedActs quantize_acts_by_group(const float* x, int64_t m, int64_t k, int64_t g, QuantizeGroupFn group) {
  QuantizedActs a = zeroed_acts(m, k, g);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t j = 0; j < a.groups; ++j) {
      const size_t cell = static_cast<size_t>(t * a.groups + j);
      group(x + t * k + j * g, g, a.xq.data() + t * a.stride + j * g, a.sx[cell], a.corr[cell]);
    }
  }
  return a;
}

namespace {

// One (row, group) of the spec's activation quantizer (bcq_int8.h).
void quantize_group(const float* xs, int64_t g, int8_t* xq, float& sx, int32_t& corr) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t c = 0; c < g; ++c) {
    finite = finite && std::isfinite(xs[c]);
    amax = std::max(amax, std::fabs(xs[c]));
  }
  if (!finite) {
    sx = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  if (amax == 0.0f) return;
  const float inv = 127.0f / amax;
  sx = amax / 127.0f;
  int32_t sum = 0;
  for (int64_t c = 0; c < g; ++c) {
    xq[c] = static_cast<int8_t>(std::clamp(std::nearbyint(xs[c] * inv), -127.0f, 127.0f));
    sum += xq[c];
  }
  corr = -128 * sum;
}

}  // namespace

QuantizedActs quantize_acts(const float* x, int64_t m, int64_t k, int64_t g) {
  return quantize_acts_by_group(x, m, k, g, &quantize_group);
}

void bcq_int8_gemm_ref(const BcqInt8Packed& w, const QuantizedActs& xa, float* y) {
  for (int64_t t = 0; t < xa.m; ++t) {
    for (int64_t r = 0; r < w.n; ++r) {
      const int64_t tile = r / kInt8TileRows, row = r % kInt8TileRows;
      float acc = 0.0f;
      for (int64_t j = 0; j < w.groups; ++j) {
        const size_t cell = static_cast<size_t>((tile * w.groups + j) * kInt8TileRows + row);
        int32_t isum = 0;
        for (int64_t c = j * w.g; c < (j + 1) * w.g; ++c) {
          isum += static_cast<int32_t>(xa.xq[static_cast<size_t>(t * xa.stride + c)]) * w.level(r, c);
        }
        const float scale = w.ws[cell] * xa.sx[static_cast<size_t>(t * w.groups + j)];
        acc = std::fma(static_cast<float>(isum), scale, acc);
      }
      y[t * w.n + r] = acc;
    }
  }
}

bool bcq_int8_amx_available(const CpuFeatures& cpu) { return cpu.amx_int8 && bcq_int8_avx512_available(cpu); }

bool bcq_int8_amx_supported(int64_t g) { return g % 64 == 0; }

Int8Kernel best_int8_kernel(const CpuFeatures& cpu, const BcqInt8Packed& w, bool allow_amx) {
  if (allow_amx && bcq_int8_amx_available(cpu) && bcq_int8_amx_supported(w.g) && w.row_codes.size() > 0) {
    return Int8Kernel::kAmx;
  }
  if (bcq_int8_avx512_available(cpu) && w.has_quads()) return Int8Kernel::kAvx512;
  if (bcq_int8_avx2_available(cpu) && bcq_int8_avx2_supported(w.g) && w.row_codes.size() > 0) return Int8Kernel::kAvx2;
  return Int8Kernel::kRef;
}

void bcq_int8_gemm(const BcqInt8Packed& w, const float* x, int64_t m, float* y, ThreadPool& pool, Int8Kernel kernel) {
  const QuantizedActs xa = kernel == Int8Kernel::kRef    ? quantize_acts(x, m, w.k, w.g)
                           : kernel == Int8Kernel::kAvx2 ? quantize_acts_avx2(x, m, w.k, w.g)
                                                         : quantize_acts_avx512(x, m, w.k, w.g);
  switch (kernel) {
    case Int8Kernel::kAvx2: bcq_int8_gemm_avx2(w, xa, y, pool); break;
    case Int8Kernel::kAmx: bcq_int8_gemm_amx(w, xa, y, pool); break;
    case Int8Kernel::kAvx512: bcq_int8_gemm_avx512(w, xa, y, pool); break;
    case Int8Kernel::kRef: bcq_int8_gemm_ref(w, xa, y); break;
  }
}

}  // namespace lutq::kernels
