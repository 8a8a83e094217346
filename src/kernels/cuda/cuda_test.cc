// Tests of the CUDA backend. Without a GPU: the host layout's round trip (unpack(repack(w)) == w)
// and the shape / availability errors. With a GPU (skipped, with the reason, otherwise): a grid
// over q, g, orientation, offset, awkward n, m = 1..32, both kernels (LUT with mu = 4 and 8, MMA),
// fp16 and bf16 activations and the host entry point, against the double-precision `ref` backend
// with the per-element bound derived in docs/kernels.md ("CUDA"); outputs are poisoned with NaN
// before every call and inputs are fresh each run (seed printed; LUTQ_TEST_SEED replays it).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/fp16.h"
#include "kernels/cuda/cuda_gemm.h"
#include "kernels/cuda/cuda_layout.h"
#include "kernels/linear.h"
#include "support/random_bcq.h"

namespace lutq::kernels::cuda {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// fp32 -> bf16 bits, round to nearest even (finite inputs).
uint16_t fp32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Per-element bound of a CUDA result against `ref` (docs/kernels.md, "CUDA", "Error bound"):
//   (u_a + u_w + u_a·u_w)·M + e_a·(1 + u_w)·S + e_w·(1 + u_a)·X + 4·γ_N·(1 + u_a)(1 + u_w)·M,
// M = Σ_c A_c·|x_c|, S = Σ_c A_c, X = Σ_c |x_c|, A_c = Σ_i |α_i(r,c)| + |z(r,c)|, N = k + 2q + 32;
// u_a, e_a: relative / subnormal-absolute rounding of the activations to fp16 (2^-11, 2^-25) or
// bf16 (2^-8, 0); u_w, e_w the same for the weights on the MMA path (0 on the LUT path: fp32
// tables). The factor 4 on γ_N covers tensor-core accumulation that may truncate instead of
// rounding (2u) and the fp32 dequantization of w.
std::vector<double> cuda_bounds(const BcqMatrix& w, const float* x, Activation act, bool mma) {
  const double ua = act == Activation::kF16 ? 0x1p-11 : 0x1p-8;
  const double ea = act == Activation::kF16 ? 0x1p-25 : 0.0;
  const double uw = mma ? ua : 0.0;
  const double ew = mma ? ea : 0.0;
  const int q = w.cfg.q;
  const double n_round = static_cast<double>(w.k + 2 * q + 32);
  const double gamma = n_round * 0x1p-24 / (1.0 - n_round * 0x1p-24);
  std::vector<double> bound(static_cast<size_t>(w.n));
  double xsum = 0.0;
  for (int64_t c = 0; c < w.k; ++c) xsum += std::fabs(x[c]);
  for (int64_t r = 0; r < w.n; ++r) {
    double mag = 0.0;
    double scale_sum = 0.0;
    for (int64_t c = 0; c < w.k; ++c) {
      const int64_t set = w.scale_set(r, c);
      double a = w.cfg.has_offset ? std::fabs(fp16_to_fp32(w.offset[static_cast<size_t>(set)])) : 0.0;
      for (int i = 0; i < q; ++i) a += std::fabs(fp16_to_fp32(w.alpha[static_cast<size_t>(set * q + i)]));
      mag += a * std::fabs(x[c]);
      scale_sum += a;
    }
    bound[static_cast<size_t>(r)] = (ua + uw + ua * uw) * mag + ea * (1 + uw) * scale_sum + ew * (1 + ua) * xsum +
                                    4.0 * gamma * (1 + ua) * (1 + uw) * mag;
  }
  return bound;
}

// cuda_bounds for every activation row: bound[mm * n + r].
std::vector<double> all_bounds(const BcqMatrix& w, const std::vector<float>& x, int64_t m, Activation act, bool mma) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(m * w.n));
  for (int64_t mm = 0; mm < m; ++mm) {
    const std::vector<double> b = cuda_bounds(w, x.data() + mm * w.k, act, mma);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

// Checks y against want element by element; the failure names the worst element.
void expect_within(const BcqMatrix& w, const std::vector<float>& y, const std::vector<float>& want,
                   const std::vector<double>& bound) {
  double worst_ratio = 0.0;
  size_t worst = 0;
  for (size_t idx = 0; idx < y.size(); ++idx) {
    const double err = std::fabs(static_cast<double>(y[idx]) - want[idx]);
    const double ratio = std::isfinite(y[idx]) ? err / std::max(bound[idx], 1e-30) : INFINITY;
    if (!(ratio <= worst_ratio)) {
      worst_ratio = ratio;
      worst = idx;
    }
  }
  ASSERT_LE(worst_ratio, 1.0) << "worst element y[" << worst / static_cast<size_t>(w.n) << ","
                              << worst % static_cast<size_t>(w.n) << "] = " << y[worst] << ", ref " << want[worst]
                              << " > bound " << bound[worst];
}

// Device buffers that free themselves (test-only convenience).
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { EXPECT_EQ(cudaMalloc(&ptr, bytes), cudaSuccess); }
  ~DeviceBuffer() { (void)cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Runs gemm_device with one path / mu / activation type on poisoned outputs and checks it.
void check_device_path(const BcqLinear& lin, const BcqMatrix& w, const std::vector<float>& x, int64_t m,
                       const std::vector<float>& want, Activation act, const GemmOptions& opt,
                       const std::vector<double>& bound) {
  std::ostringstream trace;
  trace << "path=" << path_name(opt.path) << " mu=" << opt.mu << " act=" << activation_name(act) << " ksplit=" << opt.ksplit;
  SCOPED_TRACE(trace.str());
  std::vector<uint16_t> xh(x.size());
  for (size_t i = 0; i < x.size(); ++i) xh[i] = act == Activation::kF16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
  DeviceBuffer dx(xh.size() * sizeof(uint16_t));
  DeviceBuffer dy(static_cast<size_t>(m * w.n) * sizeof(float));
  ASSERT_EQ(cudaMemcpy(dx.ptr, xh.data(), xh.size() * sizeof(uint16_t), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dy.ptr, 0xff, static_cast<size_t>(m * w.n) * sizeof(float)), cudaSuccess);  // NaN poison
  const Status s = gemm_device(lin.packed(), act, dx.ptr, m, static_cast<float*>(dy.ptr), nullptr, opt);
  if (!s.is_ok() && opt.path == Path::kLut && opt.mu == 8 && w.cfg.orientation == Orientation::kPerIC) {
    // mu = 8 per-IC tables (256 entries per row block and plane) may not fit shared memory: a
    // clear error, and the auto policy sends such shapes to MMA.
    EXPECT_NE(s.message().find("shared memory"), std::string::npos) << s.message();
    return;
  }
  ASSERT_TRUE(s.is_ok()) << s.message();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError());
  std::vector<float> y(static_cast<size_t>(m * w.n));
  ASSERT_EQ(cudaMemcpy(y.data(), dy.ptr, y.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  expect_within(w, y, want, bound);
}

// (q, g (0 = the full extent), orientation, offset)
using GridParam = std::tuple<int, int, Orientation, bool>;
class CudaGrid : public ::testing::TestWithParam<GridParam> {};

// Awkward n for per-OC (1, 17, 33, 100, and 300: several tiles per block and a K split); per-IC
// needs n a multiple of g (awkward n come with g = n).
std::vector<std::pair<int64_t, int64_t>> cuda_shapes(Orientation o, int g) {
  if (o == Orientation::kPerOC) {
    if (g == 0) return {{1, 32}, {17, 96}, {33, 576}, {300, 1024}};
    return {{17, g}, {33, 3 * g}, {100, 4 * g}, {300, 2048}};
  }
  if (g == 0) return {{17, 96}, {100, 160}, {33, 1024}};
  return {{g, 96}, {3 * g, 512}, {g, 2048}};
}

TEST_P(CudaGrid, MatchesRefWithinDerivedBound) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const auto [q, g, orientation, offset] = GetParam();
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool pool(1);
  for (auto [n, k] : cuda_shapes(orientation, g)) {
    const BcqConfig cfg{q, g == 0 ? (orientation == Orientation::kPerOC ? k : n) : g, orientation, offset};
    const BcqMatrix w = testing::random_bcq(n, k, cfg, rng);
    auto lin = BcqLinear::create(w, Isa::kCuda, Precision::kExact);
    ASSERT_TRUE(lin.is_ok()) << lin.status().message();
    auto ref = BcqLinear::create(w, Isa::kRef, Precision::kExact);
    ASSERT_TRUE(ref.is_ok());
    for (int64_t m : {1, 2, 3, 4, 8, 17, 32}) {
      SCOPED_TRACE(format::describe(w) + " m=" + std::to_string(m) + " seed=" + std::to_string(seed) +
                   " (LUTQ_TEST_SEED reproduces)");
      const std::vector<float> x = testing::random_activations(m, k, rng);
      std::vector<float> want(static_cast<size_t>(m * n), std::numeric_limits<float>::quiet_NaN());
      ASSERT_TRUE(ref->forward(x.data(), m, want.data(), pool).is_ok());
      // The host entry point (auto policy, fp16), through BcqLinear.
      std::vector<float> y(want.size(), std::numeric_limits<float>::quiet_NaN());
      const Status s = lin->forward(x.data(), m, y.data(), pool);
      ASSERT_TRUE(s.is_ok()) << s.message();
      // Bounds per activation type, MMA (16-bit weights) and LUT (fp32 tables).
      const std::vector<double> mma_f16 = all_bounds(w, x, m, Activation::kF16, true);
      expect_within(w, y, want, mma_f16);
      if (::testing::Test::HasFatalFailure()) return;
      for (Activation act : {Activation::kF16, Activation::kBF16}) {
        const std::vector<double> mma_bound = act == Activation::kF16 ? mma_f16 : all_bounds(w, x, m, act, true);
        const std::vector<double> lut_bound = all_bounds(w, x, m, act, false);
        for (int ksplit : {1, 0}) {
          check_device_path(*lin, w, x, m, want, act, GemmOptions{Path::kMma, 4, ksplit}, mma_bound);
          if (::testing::Test::HasFatalFailure()) return;
          if (q <= kLutMaxQ && m <= kLutMaxM) {
            for (int mu : {4, 8}) {
              const GemmOptions opt{Path::kLut, mu, ksplit};
              check_device_path(*lin, w, x, m, want, act, opt, lut_bound);
              if (::testing::Test::HasFatalFailure()) return;
            }
          }
        }
      }
    }
  }
}

std::string grid_name(const ::testing::TestParamInfo<GridParam>& info) {
  const auto [q, g, orientation, offset] = info.param;
  return "q" + std::to_string(q) + "_g" + (g == 0 ? std::string("full") : std::to_string(g)) + "_" +
         (orientation == Orientation::kPerOC ? "oc" : "ic") + (offset ? "_offset" : "");
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaGrid,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 8), ::testing::Values(32, 128, 256, 0),
                                            ::testing::Values(Orientation::kPerOC, Orientation::kPerIC),
                                            ::testing::Bool()),
                         grid_name);

INSTANTIATE_TEST_SUITE_P(CudaWide, CudaGrid,
                         ::testing::Combine(::testing::Values(3, 5), ::testing::Values(64),
                                            ::testing::Values(Orientation::kPerOC, Orientation::kPerIC),
                                            ::testing::Values(true)),
                         grid_name);

// m beyond one call (kMaxM) is tiled by BcqLinear::forward through the host entry point.
TEST(CudaLinear, LargeMIsTiled) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed=" + std::to_string(seed));
  ThreadPool pool(1);
  const BcqMatrix w = testing::random_bcq(40, 512, BcqConfig{3, 64, Orientation::kPerOC, true}, rng);
  auto lin = BcqLinear::create(w, Isa::kCuda, Precision::kExact);
  ASSERT_TRUE(lin.is_ok()) << lin.status().message();
  auto ref = BcqLinear::create(w, Isa::kRef, Precision::kExact);
  for (int64_t m : {33, 70}) {
    const std::vector<float> x = testing::random_activations(m, w.k, rng);
    std::vector<float> y(static_cast<size_t>(m * w.n), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> want(y.size(), std::numeric_limits<float>::quiet_NaN());
    ASSERT_TRUE(lin->forward(x.data(), m, y.data(), pool).is_ok());
    ASSERT_TRUE(ref->forward(x.data(), m, want.data(), pool).is_ok());
    expect_within(w, y, want, all_bounds(w, x, m, Activation::kF16, true));
  }
}

// Runs without a GPU: the layout is computed on the host and is exactly invertible.
TEST(CudaLayout, RoundTripIsIdentity) {
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed=" + std::to_string(seed));
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (int q : {1, 2, 3, 4, 5, 8}) {
      for (int g : {32, 64, 128, 256, 0}) {
        for (int64_t n : {1, 17, 33, 100, 256}) {
          const int64_t k = o == Orientation::kPerOC ? (g == 0 ? 160 : 2 * g) : 96;
          if (o == Orientation::kPerIC && g != 0 && n % g != 0) continue;
          const BcqConfig cfg{q, g == 0 ? (o == Orientation::kPerOC ? k : n) : g, o, q % 2 == 0};
          const BcqMatrix w = testing::random_bcq(n, k, cfg, rng);
          SCOPED_TRACE(format::describe(w));
          ASSERT_TRUE(cuda_backend().check(w, Precision::kExact).is_ok());
          const PackedMatrix packed = cuda_backend().repack(w, Precision::kExact);
          EXPECT_EQ(packed.data.size(), layout_of(w).bytes);
          const BcqMatrix back = cuda_backend().unpack(packed);
          testing::expect_same_bcq(back, w);
        }
      }
    }
  }
}

// Runs without a GPU: the layout puts plane i, row r, activation c where the kernels look for it.
TEST(CudaLayout, BitAndScalePositions) {
  std::mt19937_64 rng(7);
  const BcqMatrix w = testing::random_bcq(40, 128, BcqConfig{3, 64, Orientation::kPerOC, true}, rng);
  const AlignedBuffer buf = repack_layout(w);
  const Layout l = layout_of(w);
  EXPECT_EQ(l.tiles, 2);
  EXPECT_EQ(l.words, 4);
  const auto* bits = reinterpret_cast<const uint32_t*>(buf.data() + l.bits_offset);
  const auto* alpha = reinterpret_cast<const uint16_t*>(buf.data() + l.alpha_offset);
  const auto* offset = reinterpret_cast<const uint16_t*>(buf.data() + l.offset_offset);
  for (int i = 0; i < 3; ++i) {
    for (int64_t r = 0; r < w.n; ++r) {
      for (int64_t c = 0; c < w.k; ++c) {
        const uint32_t word = bits[((r / 32 * l.words + c / 32) * 3 + i) * 32 + r % 32];
        ASSERT_EQ((word >> (c % 32)) & 1u, w.bit(i, r, c) ? 1u : 0u) << "plane " << i << " row " << r << " col " << c;
      }
      for (int64_t grp = 0; grp < 2; ++grp) {
        ASSERT_EQ(alpha[((r / 32 * 2 + grp) * 3 + i) * 32 + r % 32], w.alpha[static_cast<size_t>((r * 2 + grp) * 3 + i)]);
        ASSERT_EQ(offset[(r / 32 * 2 + grp) * 32 + r % 32], w.offset[static_cast<size_t>(r * 2 + grp)]);
      }
    }
  }
  // Padding rows 40..63 are zero.
  for (int64_t r = 40; r < 64; ++r) EXPECT_EQ(bits[((1 * l.words + 0) * 3 + 0) * 32 + r % 32], 0u);
}

TEST(CudaBackend, ShapesAndAvailabilityGiveClearErrors) {
  std::mt19937_64 rng(1);
  const BcqMatrix w = testing::random_bcq(8, 40, BcqConfig{2, 40, Orientation::kPerOC, false}, rng);
  const Status s = cuda_backend().check(w, Precision::kFast);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("multiple of 32"), std::string::npos) << s.message();
  EXPECT_EQ(*parse_isa("cuda"), Isa::kCuda);
  if (!have_gpu()) {
    auto sel = select_isa(detect_cpu(), Isa::kCuda);
    ASSERT_FALSE(sel.is_ok());
    EXPECT_NE(sel.status().message().find("cuda"), std::string::npos) << sel.status().message();
  }
  // Never the default: ref (always available) comes before it.
  EXPECT_NE(available_isas(detect_cpu()).front(), Isa::kCuda);
}

TEST(CudaPolicy, PicksLutForGemvAndMmaForBatches) {
  EXPECT_EQ(choose_path(1, 4096, 4096, 4), Path::kLut);
  EXPECT_EQ(choose_path(1, 4096, 4096, 8), Path::kMma);  // LUT kernels take q <= 4
  EXPECT_EQ(choose_path(16, 4096, 4096, 2), Path::kMma);
  EXPECT_EQ(choose_path(1, 4096, 128, 2), Path::kMma);  // too short a K to amortize tables
}

}  // namespace
}  // namespace lutq::kernels::cuda
