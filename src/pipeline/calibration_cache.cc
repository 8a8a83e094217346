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

bool ffn_input(int input) {
  return input == static_cast<int>(LinearInput::kFfn) || input == static_cast<int>(LinearInput::kFfnDown);
}

// Expert x's statistics of one of its inputs (0: gate/up, 1: down): calib.L.expert.X.ffn /
// .ffn_down for a routed expert, calib.L.shexp.ffn / .ffn_down for the shared one (x = n_routed).
std::string expert_tensor_name(int64_t layer, int64_t x, int64_t n_routed, int input) {
  const std::string who = x < n_routed ? "expert." + std::to_string(x) : std::string("shexp");
  return "calib." + std::to_string(layer) + "." + who + (input == 0 ? ".ffn" : ".ffn_down");
}

std::string expert_rows_name(int64_t layer) { return "calib." + std::to_string(layer) + ".expert_rows"; }

Status add_f64(io::GgufWriter& w, const std::string& name, const quant::HessianAccumulator& a) {
  const std::vector<double>& h = a.h();
  return w.add_tensor(name, {a.k(), a.k()}, io::GgmlType::F64,
                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(h.data()), h.size() * sizeof(double)));
}

// An MoE block's expert statistics (routed experts, then the shared one) and the rows each saw,
// calib.L.expert_rows (I64, one per expert).
Status add_experts(io::GgufWriter& w, const CalibrationStats& stats, int64_t l) {
  const std::vector<quant::HessianAccumulator>& acc = stats.expert_accumulators(l);
  std::vector<int64_t> rows;
  for (size_t slot = 0; slot < acc.size(); ++slot) {
    const auto x = static_cast<int64_t>(slot / 2);
    const int input = static_cast<int>(slot % 2);
    if (input == 0) rows.push_back(acc[slot].rows());
    if (acc[slot].rows() != rows.back()) {
      return Status::invalid("calibration cache: block " + std::to_string(l) + " expert slot " + std::to_string(x) +
                             ": its gate/up and down inputs saw different row counts");
    }
    if (Status s = add_f64(w, expert_tensor_name(l, x, stats.n_routed(), input), acc[slot]); !s) return s;
  }
  return w.add_tensor(expert_rows_name(l), {static_cast<int64_t>(rows.size())}, io::GgmlType::I64,
                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(rows.data()), rows.size() * 8));
}

// A [k, k] F64 tensor as an accumulator of `rows` rows; errors name the file and tensor.
Result<quant::HessianAccumulator> read_square(const io::GgufFile& f, const std::string& name, int64_t k, int64_t rows) {
  const io::TensorInfo* t = f.find_tensor(name);
  if (t == nullptr || t->type != io::GgmlType::F64 || t->dims != std::vector<int64_t>{k, k}) {
    return Status::invalid(f.path() + ": tensor " + name + " is missing or not F64 [" + std::to_string(k) + ", " +
                           std::to_string(k) + "]");
  }
  const std::span<const uint8_t> bytes = f.tensor_bytes(*t);
  std::vector<double> h(static_cast<size_t>(k * k));
  std::memcpy(h.data(), bytes.data(), h.size() * sizeof(double));
  Result<quant::HessianAccumulator> a = quant::HessianAccumulator::restore(k, rows, std::move(h));
  if (!a) return Status::invalid(f.path() + ": " + name + ": " + a.status().message());
  return a;
}

// An MoE block's expert accumulators as add_experts wrote them, shaped by `c`.
Status read_experts(const io::GgufFile& f, const ModelConfig& c, int64_t l, int64_t tokens,
                    std::vector<quant::HessianAccumulator>& out) {
  const int64_t slots = c.n_expert + (c.n_ff_shexp > 0 ? 1 : 0);
  const std::string rows_name = expert_rows_name(l);
  const io::TensorInfo* t = f.find_tensor(rows_name);
  if (t == nullptr || t->type != io::GgmlType::I64 || t->dims != std::vector<int64_t>{slots}) {
    return Status::invalid(f.path() + ": tensor " + rows_name + " is missing or not I64 [" + std::to_string(slots) +
                           "] (the per-expert statistics of a mixture-of-experts block)");
  }
  std::vector<int64_t> rows(static_cast<size_t>(slots));
  std::memcpy(rows.data(), f.tensor_bytes(*t).data(), rows.size() * 8);
  for (int64_t x = 0; x < slots; ++x) {
    const int64_t r = rows[static_cast<size_t>(x)];
    if (r < 0 || r > tokens) {
      return Status::invalid(f.path() + ": " + rows_name + ": " + std::to_string(r) + " rows of " +
                             std::to_string(tokens) + " tokens");
    }
    const int64_t ks[] = {c.n_embd, x < c.n_expert ? c.n_ff_exp : c.n_ff_shexp};
    for (int input = 0; input < 2; ++input) {
      Result<quant::HessianAccumulator> a = read_square(f, expert_tensor_name(l, x, c.n_expert, input), ks[input], r);
      if (!a) return a.status();
      out.push_back(std::move(*a));
    }
  }
  return Status::ok();
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
    const bool moe = stats.moe_block(l);
    for (int i = 0; st && i < kNumLinearInputs; ++i) {
      if (moe && ffn_input(i)) continue;  // 1-feature placeholders: the experts' statistics follow
      const quant::HessianAccumulator& a = stats.hessian(l, kFirstRole[i]);
      if (a.rows() != stats.tokens()) {
        return Status::invalid("calibration cache: block " + std::to_string(l) + " saw " + std::to_string(a.rows()) +
                               " rows, not the " + std::to_string(stats.tokens()) + " tokens");
      }
      st = add_f64(w, tensor_name(l, i), a);
    }
    if (st && moe) st = add_experts(w, stats, l);
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
  stats.n_routed_ = config.n_expert;
  stats.experts_.resize(static_cast<size_t>(config.n_layer));
  const bool moe = config.n_expert > 0;  // every block of an MoE model is an MoE block
  for (int64_t l = 0; l < config.n_layer; ++l) {
    for (int i = 0; i < kNumLinearInputs; ++i) {
      Result<quant::HessianAccumulator> a = moe && ffn_input(i)
                                                ? quant::HessianAccumulator::create(1)
                                                : read_square(*f, tensor_name(l, i), expected_k(config, i), *tokens);
      if (!a) return a.status();
      stats.acc_.push_back(std::move(*a));
    }
    if (!moe) continue;
    if (Status s = read_experts(*f, config, l, *tokens, stats.experts_[static_cast<size_t>(l)]); !s) return s;
  }
  return stats;
}

}  // namespace lutq::pipeline
