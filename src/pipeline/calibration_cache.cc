// The calibration cache: CalibrationStats to and from a GGUF container (format in calibration.h).
#include <cstring>
#include <string>

#include "io/gguf_file.h"
#include "io/gguf_writer.h"
#include "pipeline/calibration.h"

namespace lutq::pipeline {
namespace {

constexpr int64_t kCacheVersion = 1;
constexpr const char* kInputNames[kNumLinearInputs] = {"attn", "attn_output", "ffn", "ffn_down"};

// FNV-1a over 64-bit words (a cache key, not a cryptographic hash).
class Fingerprint {
 public:
  void bytes(const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w = 0;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
    if (i == n) return;
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    mix(tail ^ (static_cast<uint64_t>(n - i) << 56));
  }
  void value(int64_t v) { mix(static_cast<uint64_t>(v)); }
  uint64_t get() const { return h_; }

 private:
  void mix(uint64_t w) { h_ = (h_ ^ w) * 0x100000001b3ULL; }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

std::string tensor_name(int64_t layer, int input) { return "calib." + std::to_string(layer) + "." + kInputNames[input]; }

int64_t expected_k(const ModelConfig& c, int input) {
  switch (static_cast<LinearInput>(input)) {
    case LinearInput::kAttn:
    case LinearInput::kFfn:
      return c.n_embd;
    case LinearInput::kAttnOutput:
      return c.q_dim();
    case LinearInput::kFfnDown:
      return c.n_ff;
  }
  return 0;
}

Result<int64_t> int_key(const io::GgufFile& f, const char* key) {
  const io::GgufValue* v = f.find(key);
  if (v == nullptr) return Status::invalid(f.path() + ": no " + key + " (not a lutq calibration cache)");
  if (v->type != io::GgufValueType::INT64) {
    return Status::invalid(f.path() + ": " + key + " is " + v->type_description() + ", expected int64");
  }
  return v->i64;
}

}  // namespace

uint64_t calibration_fingerprint(const io::Checkpoint& checkpoint, std::span<const std::vector<int32_t>> chunks) {
  Fingerprint fp;
  fp.value(kCacheVersion);
  for (const io::TensorInfo& t : checkpoint.tensors()) {
    fp.bytes(reinterpret_cast<const uint8_t*>(t.name.data()), t.name.size());
    for (int64_t d : t.dims) fp.value(d);
    fp.value(static_cast<int64_t>(t.type));
    const std::span<const uint8_t> data = checkpoint.tensor_bytes(t);
    fp.bytes(data.data(), data.size());
  }
  fp.value(static_cast<int64_t>(chunks.size()));
  for (const std::vector<int32_t>& chunk : chunks) {
    fp.value(static_cast<int64_t>(chunk.size()));
    fp.bytes(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size() * sizeof(int32_t));
  }
  return fp.get();
}

Status save_calibration(const CalibrationStats& stats, uint64_t fingerprint, const std::string& path) {
  io::GgufWriter w;
  Status st = w.add("lutq.calib.version", io::GgufValue::make_int(io::GgufValueType::INT64, kCacheVersion));
  if (st) st = w.add("lutq.calib.fingerprint", io::GgufValue::make_uint(io::GgufValueType::UINT64, fingerprint));
  if (st) st = w.add("lutq.calib.tokens", io::GgufValue::make_int(io::GgufValueType::INT64, stats.tokens()));
  if (st) st = w.add("lutq.calib.n_layer", io::GgufValue::make_int(io::GgufValueType::INT64, stats.n_layer()));
  constexpr LinearRole kFirstRole[kNumLinearInputs] = {LinearRole::kAttnQ, LinearRole::kAttnOutput,
                                                       LinearRole::kFfnGate, LinearRole::kFfnDown};
  for (int64_t l = 0; st && l < stats.n_layer(); ++l) {
    for (int i = 0; st && i < kNumLinearInputs; ++i) {
      const quant::HessianAccumulator& a = stats.hessian(l, kFirstRole[i]);
      if (a.rows() != stats.tokens()) {
        return Status::invalid("calibration cache: block " + std::to_string(l) + " saw " + std::to_string(a.rows()) +
                               " rows, not the " + std::to_string(stats.tokens()) + " tokens");
      }
      const std::vector<double>& h = a.h();
      st = w.add_tensor(tensor_name(l, i), {a.k(), a.k()}, io::GgmlType::F64,
                        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(h.data()), h.size() * sizeof(double)));
    }
  }
  if (!st) return st;
  return w.write_file(path);
}

Result<CalibrationStats> load_calibration(const std::string& path, uint64_t fingerprint, const ModelConfig& config) {
  Result<io::GgufFile> f = io::GgufFile::open(path);
  if (!f) return f.status();
  Result<int64_t> version = int_key(*f, "lutq.calib.version");
  if (!version) return version.status();
  if (*version != kCacheVersion) {
    return Status::invalid(path + ": calibration cache version " + std::to_string(*version) + ", this lutq reads " +
                           std::to_string(kCacheVersion));
  }
  const io::GgufValue* fp = f->find("lutq.calib.fingerprint");
  if (fp == nullptr || fp->type != io::GgufValueType::UINT64) {
    return Status::invalid(path + ": no uint64 lutq.calib.fingerprint");
  }
  if (fp->u64 != fingerprint) {
    return Status::invalid(path + ": made from another model or other calibration tokens");
  }
  Result<int64_t> tokens = int_key(*f, "lutq.calib.tokens");
  if (!tokens) return tokens.status();
  Result<int64_t> n_layer = int_key(*f, "lutq.calib.n_layer");
  if (!n_layer) return n_layer.status();
  if (*n_layer != config.n_layer || *tokens < 0) {
    return Status::invalid(path + ": " + std::to_string(*n_layer) + " blocks, " + std::to_string(*tokens) +
                           " tokens; the model has " + std::to_string(config.n_layer) + " blocks");
  }
  CalibrationStats stats;
  stats.n_layer_ = config.n_layer;
  stats.tokens_ = *tokens;
  for (int64_t l = 0; l < config.n_layer; ++l) {
    for (int i = 0; i < kNumLinearInputs; ++i) {
      const std::string name = tensor_name(l, i);
      const int64_t k = expected_k(config, i);
      const io::TensorInfo* t = f->find_tensor(name);
      if (t == nullptr || t->type != io::GgmlType::F64 || t->dims != std::vector<int64_t>{k, k}) {
        return Status::invalid(path + ": tensor " + name + " is missing or not F64 [" + std::to_string(k) + ", " +
                               std::to_string(k) + "]");
      }
      const std::span<const uint8_t> bytes = f->tensor_bytes(*t);
      std::vector<double> h(static_cast<size_t>(k * k));
      std::memcpy(h.data(), bytes.data(), h.size() * sizeof(double));
      Result<quant::HessianAccumulator> a = quant::HessianAccumulator::restore(k, *tokens, std::move(h));
      if (!a) return Status::invalid(path + ": " + name + ": " + a.status().message());
      stats.acc_.push_back(std::move(*a));
    }
  }
  return stats;
}

}  // namespace lutq::pipeline
