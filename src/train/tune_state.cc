// save_tune_state / load_tune_state (tune_state.h).
#include "train/tune_state.h"

#include <cmath>
#include <cstring>
#include <span>

#include "io/gguf_file.h"
#include "io/gguf_writer.h"

namespace lutq::train {
namespace {

constexpr uint32_t kVersion = 1;
constexpr const char* kPrefix = "lutq.tune_state.";

std::string key(const char* name) { return std::string(kPrefix) + name; }

template <typename T>
std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// The tensor `name` as `count` values of T stored as `type`.
template <typename T>
Status read_values(const io::GgufFile& f, const std::string& name, io::GgmlType type, size_t count, std::vector<T>& out) {
  const io::TensorInfo* info = f.find_tensor(name);
  if (info == nullptr) return Status::invalid(f.path() + ": the tune state has no tensor '" + name + "'");
  const std::span<const uint8_t> b = f.tensor_bytes(*info);
  if (info->type != type || b.size() != count * sizeof(T)) {
    return Status::invalid(f.path() + ": tensor '" + name + "' is not " + std::to_string(count) + " values of the expected type");
  }
  out.resize(count);
  std::memcpy(out.data(), b.data(), b.size());
  return Status::ok();
}

Status read_tensors(const io::GgufFile& f, TuneState& s) {
  for (const io::TensorInfo& info : f.tensors()) {
    constexpr std::string_view kParams = ".params";
    if (!info.name.ends_with(kParams)) continue;
    TuneState::Tensor t;
    t.name = info.name.substr(0, info.name.size() - kParams.size());
    const auto n = static_cast<size_t>(info.num_elements());
    if (Status st = read_values(f, info.name, io::GgmlType::F32, n, t.params); !st) return st;
    if (Status st = read_values(f, t.name + ".m", io::GgmlType::F64, n, t.m); !st) return st;
    if (Status st = read_values(f, t.name + ".v", io::GgmlType::F64, n, t.v); !st) return st;
    for (float p : t.params) {
      if (!std::isfinite(p)) return Status::invalid(f.path() + ": tensor '" + info.name + "' holds a non-finite value");
    }
    s.tensors.push_back(std::move(t));
  }
  if (s.tensors.empty()) return Status::invalid(f.path() + ": the tune state holds no trained tensor");
  return Status::ok();
}

}  // namespace

uint64_t fnv1a(const void* data, size_t size, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

Status save_tune_state(const std::string& path, const TuneState& s) {
  io::GgufWriter w;
  const auto fail = [&](const Status& st) { return Status(st.code(), path + ": " + st.message()); };
  if (Status st = w.add_uint32(key("format_version"), kVersion); !st) return fail(st);
  if (Status st = w.add_string(key("fingerprint"), s.fingerprint); !st) return fail(st);
  if (Status st = w.add(key("step"), io::GgufValue::make_int(io::GgufValueType::INT64, s.step)); !st) return fail(st);
  if (Status st = w.add(key("next"), io::GgufValue::make_int(io::GgufValueType::INT64, s.next)); !st) return fail(st);
  if (Status st = w.add(key("order"), io::GgufValue::make_int_array(io::GgufValueType::INT64, s.order)); !st) return fail(st);
  if (Status st = w.add_string(key("rng"), s.rng); !st) return fail(st);
  if (Status st = w.add(key("held_out_before"), io::GgufValue::make_float64(s.held_out_before)); !st) return fail(st);
  for (const TuneState::Tensor& t : s.tensors) {
    const std::vector<int64_t> dims{static_cast<int64_t>(t.params.size())};
    if (t.m.size() != t.params.size() || t.v.size() != t.params.size()) {
      return Status::invalid(path + ": " + t.name + ": moments and parameters differ in size");
    }
    if (Status st = w.add_tensor(t.name + ".params", dims, io::GgmlType::F32, bytes_of(t.params)); !st) return fail(st);
    if (Status st = w.add_tensor(t.name + ".m", dims, io::GgmlType::F64, bytes_of(t.m)); !st) return fail(st);
    if (Status st = w.add_tensor(t.name + ".v", dims, io::GgmlType::F64, bytes_of(t.v)); !st) return fail(st);
  }
  return w.write_file(path);
}

Result<TuneState> load_tune_state(const std::string& path) {
  Result<io::GgufFile> f = io::GgufFile::open(path);
  if (!f) return f.status();
  return read_tune_state(*f);
}

Result<TuneState> read_tune_state(const io::GgufFile& gguf) {
  const io::GgufFile* f = &gguf;
  const std::string& path = gguf.path();
  if (!f->has(key("format_version"))) {
    return Status::invalid(path + ": not a lutq tune state (no " + key("format_version") + "; written by lutq tune --checkpoint)");
  }
  Result<int64_t> version = f->get_int(key("format_version"));
  if (!version) return version.status();
  if (*version != kVersion) {
    return Status::unsupported(path + ": tune state version " + std::to_string(*version) + ", this lutq reads " +
                               std::to_string(kVersion));
  }
  TuneState s;
  Result<std::string> fp = f->get_string(key("fingerprint"));
  Result<int64_t> step = f->get_int(key("step")), next = f->get_int(key("next"));
  Result<std::vector<int64_t>> order = f->get_int_array(key("order"));
  Result<std::string> rng = f->get_string(key("rng"));
  Result<double> before = f->get_float(key("held_out_before"));
  for (const Status& st : {fp.status(), step.status(), next.status(), order.status(), rng.status(), before.status()}) {
    if (!st) return st;
  }
  if (*step < 0 || *next < 0) return Status::invalid(path + ": negative step or sequence count");
  s.fingerprint = *fp;
  s.step = *step;
  s.next = *next;
  s.order = std::move(*order);
  s.rng = std::move(*rng);
  s.held_out_before = *before;
  if (Status st = read_tensors(gguf, s); !st) return st;
  return s;
}

}  // namespace lutq::train
