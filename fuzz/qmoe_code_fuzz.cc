// libFuzzer target for the QMoE code (format/qmoe_code.h): arbitrary bytes are cut into the
// buffers a lutq file stores for one coded matrix and its dictionary, read with
// dictionary_from_bytes / matrix_from_bytes (which validate); when they are accepted, decoding
// must give exactly n·k symbols in {−1, 0, +1} and re-encoding with the same dictionary must
// decode to the same symbols.
//
// Input: u8 n (1..), u16 k (1..), u16 D, then len u8[D], pos u32[D], neg u32[D], scale f16[n],
// offsets u32[n+1], codes u16[rest].
//   cmake -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DLUTQ_FUZZ=ON && cmake --build build-fuzz
//   build-fuzz/qmoe_code_fuzz -max_len=8192 -max_total_time=60 CORPUS_COPY   (seeds: fuzz/make_qmoe_seeds.py)
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "format/qmoe_code.h"

namespace {

void require(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const int64_t n = data[0];
  const int64_t k = data[1] | (data[2] << 8);
  const size_t d = data[3] | (data[4] << 8);
  std::span<const uint8_t> rest(data + 5, size - 5);
  const size_t need = 9 * d + 2 * static_cast<size_t>(n) + 4 * static_cast<size_t>(n + 1);
  if (rest.size() < need) return 0;
  auto dict = lutq::format::dictionary_from_bytes(rest.subspan(0, d), rest.subspan(d, 4 * d), rest.subspan(5 * d, 4 * d));
  if (!dict.is_ok()) return 0;
  auto shared = std::make_shared<const lutq::format::QmoeDictionary>(std::move(dict).value());
  rest = rest.subspan(9 * d);
  const size_t scale_bytes = 2 * static_cast<size_t>(n);
  const size_t offset_bytes = 4 * static_cast<size_t>(n + 1);
  auto m = lutq::format::matrix_from_bytes(n, k, rest.subspan(0, scale_bytes), rest.subspan(scale_bytes, offset_bytes),
                                           rest.subspan(scale_bytes + offset_bytes), shared);
  if (!m.is_ok()) return 0;
  auto t = lutq::format::decode(*m);
  require(t.is_ok());
  require(static_cast<int64_t>(t->t.size()) == n * k);
  for (int8_t s : t->t) require(s >= -1 && s <= 1);
  auto again = lutq::format::encode(*t, shared);
  require(again.is_ok());
  auto t2 = lutq::format::decode(*again);
  require(t2.is_ok() && t2->t == t->t);
  return 0;
}
