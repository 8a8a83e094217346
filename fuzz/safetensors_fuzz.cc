// libFuzzer target for the safetensors reader: parse arbitrary bytes; when they parse, check the
// reader's invariants (offsets inside the data buffer, sizes matching shapes, lookup by name,
// no overlaps) and convert every float tensor to fp32 (up to a size cap).
//
//   cmake -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DLUTQ_FUZZ=ON && cmake --build build-fuzz
//   build-fuzz/safetensors_fuzz -dict=fuzz/safetensors.dict -max_len=4096 -max_total_time=60 CORPUS_COPY
// Seeds: fuzz/make_safetensors_seeds.py (fuzz/corpus/safetensors).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace {

using lutq::io::SafetensorsDtype;
using lutq::io::SafetensorsFile;
using lutq::io::SafetensorsTensor;

constexpr int64_t kMaxConvertElements = int64_t{1} << 20;

void require(bool cond) {
  if (!cond) std::abort();  // an invariant of the reader does not hold: report as a crash
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lutq::Result<SafetensorsFile> f = SafetensorsFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.st");
  if (!f.is_ok()) {
    require(f.status().message().rfind("fuzz.st: ", 0) == 0);
    return 0;
  }
  require(f->data_offset() >= 8 && f->data_offset() <= f->file_size());
  const uint64_t data_size = f->file_size() - f->data_offset();
  uint64_t last_end = 0;
  for (const SafetensorsTensor& t : f->tensors()) {
    require(f->find(t.name) == &t);
    require(t.begin <= t.end && t.end <= data_size);
    require(t.begin >= last_end || t.size_bytes() == 0);  // data order, no overlap
    if (t.size_bytes() > 0) last_end = t.end;
    require(f->data(t).size() == t.size_bytes());
    require(static_cast<uint64_t>(t.num_elements()) * lutq::io::safetensors_dtype_size(t.dtype) == t.size_bytes());
    if (t.num_elements() > kMaxConvertElements) continue;
    const lutq::Result<std::vector<float>> v = f->to_f32(t);
    const bool is_float = t.dtype == SafetensorsDtype::kF32 || t.dtype == SafetensorsDtype::kF16 ||
                          t.dtype == SafetensorsDtype::kBF16;
    require(v.is_ok() == is_float);
    if (v.is_ok()) require(v->size() == static_cast<size_t>(t.num_elements()));
  }
  for (const auto& kv : f->metadata()) require(!kv.first.empty() || kv.second.size() <= size);
  require(f->find("\x01no such tensor") == nullptr);
  return 0;
}
