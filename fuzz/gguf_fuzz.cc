// libFuzzer target for the GGUF reader: parse arbitrary bytes; when they parse, read every
// metadata value through every getter, dequantize every tensor (up to a size cap), check the
// reader's invariants, and round-trip the file through GgufWriter.
//
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
//     -Isrc fuzz/gguf_fuzz.cc $(ls src/io/*.cc | grep -v _test.cc) -o build/gguf_fuzz
//   ./build/gguf_fuzz -dict=fuzz/gguf.dict -max_len=4096 -max_total_time=60 CORPUS_COPY fuzz/corpus/gguf
// (or CMake: -DCMAKE_CXX_COMPILER=clang++-14 -DLUTQ_FUZZ=ON, target gguf_fuzz). Seeds:
// fuzz/make_gguf_seeds.py.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/gguf_dequant.h"
#include "io/gguf_file.h"
#include "io/gguf_writer.h"

namespace {

using lutq::io::GgufFile;
using lutq::io::GgufValue;
using lutq::io::GgufValueType;
using lutq::io::GgufWriter;
using lutq::io::TensorInfo;

constexpr int64_t kMaxDequantElements = int64_t{1} << 20;

void require(bool cond) {
  if (!cond) std::abort();  // an invariant of the reader does not hold: report as a crash
}

void touch_value(const GgufValue& v) {
  require(!v.type_description().empty());
  if (!v.is_array()) return;
  // Elements, plus one past the end (must read as 0, not out of bounds).
  for (uint64_t i = 0; i <= v.count && i < 4096; ++i) {
    (void)v.element_i64(i);
    (void)v.element_u64(i);
    (void)v.element_f64(i);
  }
  for (const std::string& s : v.strings) (void)s.size();
  for (const GgufValue& item : v.items) touch_value(item);
}

void touch_metadata(const GgufFile& f) {
  const std::vector<std::string> keys = f.keys();
  require(keys.size() == f.num_keys());
  for (const std::string& k : keys) {
    const GgufValue* v = f.find(k);
    require(v != nullptr && f.has(k));
    touch_value(*v);
    (void)f.get_string(k);
    (void)f.get_int(k);
    (void)f.get_float(k);
    (void)f.get_bool(k);
    (void)f.get_string_array(k);
    (void)f.get_int_array(k);
    (void)f.get_float_array(k);
  }
  require(!f.get_string("fuzz.no.such.key").is_ok());
}

void touch_tensors(const GgufFile& f) {
  for (const TensorInfo& t : f.tensors()) {
    require(f.find_tensor(t.name) == &t);
    require(t.num_elements() > 0);
    require(f.data_offset() + t.offset + t.size_bytes <= f.file_size());
    require(f.tensor_bytes(t).size() == t.size_bytes);
    if (t.num_elements() > kMaxDequantElements) continue;
    const lutq::Result<std::vector<float>> d = f.dequantize(t);
    if (d.is_ok()) {
      require(d->size() == static_cast<size_t>(t.num_elements()));
    } else {
      require(d.status().code() == lutq::StatusCode::kUnsupported && !lutq::io::dequantize_supported(t.type));
    }
  }
}

// Writes the parsed content back out; it must parse again to the same keys and tensors.
void round_trip(const GgufFile& f) {
  GgufWriter w(f.version());
  for (const std::string& k : f.keys()) {
    if (!w.add(k, *f.find(k))) return;  // e.g. general.alignment stored as another integer type
  }
  for (const TensorInfo& t : f.tensors()) {
    if (!w.add_tensor(t.name, t.dims, t.type, f.tensor_bytes(t))) std::abort();
  }
  lutq::Result<GgufFile> again = GgufFile::from_memory(w.to_bytes(), "roundtrip.gguf");
  require(again.is_ok());
  require(again->keys() == f.keys());
  require(again->tensors().size() == f.tensors().size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const TensorInfo& a = f.tensors()[i];
    const TensorInfo& b = again->tensors()[i];
    require(a.name == b.name && a.dims == b.dims && a.type == b.type && a.size_bytes == b.size_bytes);
    const auto x = f.tensor_bytes(a);
    const auto y = again->tensor_bytes(b);
    require(std::equal(x.begin(), x.end(), y.begin(), y.end()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lutq::Result<GgufFile> f = GgufFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.gguf");
  if (!f.is_ok()) {
    require(f.status().message().rfind("fuzz.gguf: ", 0) == 0);
    return 0;
  }
  touch_metadata(*f);
  touch_tensors(*f);
  round_trip(*f);
  return 0;
}
