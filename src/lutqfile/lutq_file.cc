#include "lutqfile/lutq_file.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "format/scale_codes.h"
#include "lutqfile/qmoe_entry.h"  // kQmoeKeyPrefix (a header constant; no link dependency)

namespace lutq::lutqfile {
namespace {

constexpr const char* kBitsSuffix = ".bcq_bits";
constexpr const char* kAlphaSuffix = ".bcq_alpha";
constexpr const char* kOffsetSuffix = ".bcq_offset";
constexpr const char* kAlphaCodeSuffix = ".bcq_alpha_code";
constexpr const char* kAlphaSuperSuffix = ".bcq_alpha_super";
constexpr const char* kOffsetCodeSuffix = ".bcq_offset_code";
constexpr const char* kOffsetRangeSuffix = ".bcq_offset_range";

std::string key_of(std::string_view name) { return std::string(kBcqKeyPrefix) + std::string(name); }
std::string int8_key_of(std::string_view name) { return std::string(kInt8KeyPrefix) + std::string(name); }

// ggml dims of the alpha / offset tensors (alpha: `planes` per set, q or 1 for uniform scales).
std::vector<int64_t> alpha_dims(const format::BcqMatrix& w, int64_t planes) {
  if (w.cfg.orientation == format::Orientation::kPerOC) return {planes, w.k / w.cfg.g, w.n};
  return {planes, w.k, w.n / w.cfg.g};
}

// Plane 0's values of each group of q (the stored form of uniform scales).
template <typename T>
std::vector<T> first_planes(const std::vector<T>& v, int q) {
  std::vector<T> out(v.size() / static_cast<size_t>(q));
  for (size_t j = 0; j < out.size(); ++j) out[j] = v[j * static_cast<size_t>(q)];
  return out;
}

// Raises the file's format version to at least v.
void require_version(io::GgufWriter& out, uint32_t v) {
  const io::GgufValue* cur = out.find(std::string(kVersionKey));
  if (cur != nullptr && cur->u64 >= v) return;
  (void)out.replace(std::string(kVersionKey), io::GgufValue::make_uint(io::GgufValueType::UINT32, v));
}
std::vector<int64_t> offset_dims(const format::BcqMatrix& w) {
  if (w.cfg.orientation == format::Orientation::kPerOC) return {w.k / w.cfg.g, w.n};
  return {w.k, w.n / w.cfg.g};
}

template <typename T>
std::span<const uint8_t> as_bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// Copies tensor `tname` into `out` (resized to it) after checking its type and dims. Nothing is
// allocated before the dims match the expected ones, so the allocation is bounded by the file's
// size (its reader checked every tensor's bytes against it), whatever shape a damaged entry claims.
template <typename T>
Status read_part(const io::Checkpoint& ckpt, const std::string& tname, io::GgmlType type,
                 const std::vector<int64_t>& dims, std::vector<T>& out) {
  const io::TensorInfo* t = ckpt.find_tensor(tname);
  if (t == nullptr) return Status::invalid(ckpt.path() + ": missing tensor '" + tname + "'");
  if (t->type != type || t->dims != dims) {
    return Status::invalid(ckpt.path() + ": tensor '" + tname + "' has type " + io::ggml_type_name(t->type) +
                           " and " + std::to_string(t->dims.size()) + " dims, not those its lutq entry implies");
  }
  const std::span<const uint8_t> bytes = ckpt.tensor_bytes(*t);
  if (bytes.size() % sizeof(T) != 0) {
    return Status::invalid(ckpt.path() + ": tensor '" + tname + "' holds " + std::to_string(bytes.size()) + " bytes");
  }
  out.resize(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return Status::ok();
}

// Reads N.bcq_alpha (`planes` per set: q, or 1 for uniform scales) and, with offsets,
// N.bcq_offset into w.
Status read_fp16_scales(const io::Checkpoint& ckpt, const std::string& base, int64_t planes, format::BcqMatrix& w) {
  if (Status s = read_part(ckpt, base + kAlphaSuffix, io::GgmlType::F16, alpha_dims(w, planes), w.alpha); !s) return s;
  w.offset.clear();
  if (w.cfg.has_offset) {
    if (Status s = read_part(ckpt, base + kOffsetSuffix, io::GgmlType::F16, offset_dims(w), w.offset); !s) return s;
  }
  return Status::ok();
}

// Adds w's N.bcq_alpha (plane 0 only when `uniform`) and, with offsets, N.bcq_offset.
Status add_fp16_scales(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w, bool uniform) {
  const int q = w.cfg.q;
  const std::vector<uint16_t> alpha = uniform ? first_planes(w.alpha, q) : w.alpha;
  if (Status s = out.add_tensor(name + kAlphaSuffix, alpha_dims(w, uniform ? 1 : q), io::GgmlType::F16, as_bytes(alpha));
      !s) {
    return s;
  }
  if (!w.cfg.has_offset) return Status::ok();
  return out.add_tensor(name + kOffsetSuffix, offset_dims(w), io::GgmlType::F16, as_bytes(w.offset));
}

// Reads one packed code tensor of `count` codes into out, naming the file and tensor on errors.
Status read_code_tensor(const io::Checkpoint& ckpt, const std::string& tname, int64_t count, int bits,
                        std::vector<uint8_t>& out) {
  std::vector<uint8_t> bytes;
  if (Status s = read_part(ckpt, tname, io::GgmlType::I8, {format::packed_size(count, bits)}, bytes); !s) return s;
  if (Status s = format::unpack_codes(bytes, count, bits, out); !s) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": tensor '" + tname + "': " + s.message());
  }
  return Status::ok();
}

// Reads the compressed scales of BCQ matrix `base` into w.codes and decodes them into w.alpha /
// w.offset; errors name the file and tensor.
Status read_codes(const io::Checkpoint& ckpt, const std::string& base, int bits, bool uniform, format::BcqMatrix& w) {
  const int64_t sets = w.num_scale_sets();
  const int64_t lines = format::num_lines(w);
  const int64_t planes = uniform ? 1 : w.cfg.q;
  format::ScaleCodes& c = w.codes;
  c.bits = bits;
  if (Status s = read_code_tensor(ckpt, base + kAlphaCodeSuffix, sets * planes, bits, c.alpha_code); !s) return s;
  if (Status s = read_part(ckpt, base + kAlphaSuperSuffix, io::GgmlType::F16, {planes, lines}, c.alpha_super); !s) {
    return s;
  }
  if (uniform) {
    if (Status s = format::expand_uniform_codes(c, w.cfg.q); !s) {
      return Status(StatusCode::kCorrupt, ckpt.path() + ": BCQ matrix '" + base + "': " + s.message());
    }
  }
  if (w.cfg.has_offset) {
    if (Status s = read_code_tensor(ckpt, base + kOffsetCodeSuffix, sets, bits, c.offset_code); !s) return s;
    if (Status s = read_part(ckpt, base + kOffsetRangeSuffix, io::GgmlType::F16, {2, lines}, c.offset_range); !s) {
      return s;
    }
  }
  if (Status s = format::decode_scales(w); !s) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": BCQ matrix '" + base + "': " + s.message());
  }
  return Status::ok();
}

// Adds the compressed scales of w (the lutq.bcq.N.scale_bits key and the code tensors).
Status add_codes(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w, bool uniform) {
  if (Status s = format::validate_codes(w); !s) return Status(s.code(), name + ": " + s.message());
  if (!format::scales_match_codes(w)) {
    return Status::invalid(name + ": the scales differ from the decoding of their codes (changed after encoding)");
  }
  const format::ScaleCodes& c = w.codes;
  const int64_t lines = format::num_lines(w);
  if (Status s = out.add_uint32(key_of(name) + ".scale_bits", static_cast<uint32_t>(c.bits)); !s) return s;
  const int q = w.cfg.q;
  const std::vector<uint8_t> ac = format::pack_codes(uniform ? first_planes(c.alpha_code, q) : c.alpha_code, c.bits);
  if (Status s = out.add_tensor(name + kAlphaCodeSuffix, {static_cast<int64_t>(ac.size())}, io::GgmlType::I8, ac); !s) {
    return s;
  }
  const std::vector<uint16_t> super = uniform ? first_planes(c.alpha_super, q) : c.alpha_super;
  if (Status s = out.add_tensor(name + kAlphaSuperSuffix, {uniform ? 1 : q, lines}, io::GgmlType::F16, as_bytes(super));
      !s) {
    return s;
  }
  if (!w.cfg.has_offset) return Status::ok();
  const std::vector<uint8_t> oc = format::pack_codes(c.offset_code, c.bits);
  if (Status s = out.add_tensor(name + kOffsetCodeSuffix, {static_cast<int64_t>(oc.size())}, io::GgmlType::I8, oc); !s) {
    return s;
  }
  return out.add_tensor(name + kOffsetRangeSuffix, {2, lines}, io::GgmlType::F16, as_bytes(c.offset_range));
}

}  // namespace

Result<bool> is_lutq_file(const io::Checkpoint& ckpt) {
  if (!ckpt.has(kVersionKey)) return false;
  Result<int64_t> v = ckpt.get_int(kVersionKey);
  if (!v) return v.status();
  if (*v < 1 || *v > kFormatVersion) {
    return Status::unsupported(ckpt.path() + ": lutq file format version " + std::to_string(*v) +
                               " (this build reads versions 1.." + std::to_string(kFormatVersion) + ")");
  }
  return true;
}

Result<std::optional<BcqEntry>> find_bcq(const io::Checkpoint& ckpt, std::string_view name) {
  const std::string key = key_of(name);
  if (!ckpt.has(key)) return std::optional<BcqEntry>();
  Result<std::vector<int64_t>> a = ckpt.get_int_array(key);
  if (!a) return a.status();
  const std::vector<int64_t>& v = *a;
  const auto bad = [&](const std::string& why) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": metadata " + key + ": " + why);
  };
  if (v.size() != 6) return bad("expected 6 values [n, k, q, g, orientation, has_offset], found " + std::to_string(v.size()));
  if (v[0] < 1 || v[1] < 1 || v[0] > (int64_t{1} << 31) || v[1] > (int64_t{1} << 31)) {
    return bad("bad shape " + std::to_string(v[0]) + "x" + std::to_string(v[1]));
  }
  if (v[2] < 1 || v[2] > format::kMaxBits) return bad("bit count " + std::to_string(v[2]) + " outside 1..8");
  if (v[4] != 0 && v[4] != 1) return bad("orientation " + std::to_string(v[4]) + " (0 per-OC, 1 per-IC)");
  if (v[5] != 0 && v[5] != 1) return bad("has_offset " + std::to_string(v[5]) + " (0 or 1)");
  BcqEntry e;
  e.n = v[0];
  e.k = v[1];
  e.cfg.q = static_cast<int>(v[2]);
  e.cfg.g = v[3];
  e.cfg.orientation = v[4] == 0 ? format::Orientation::kPerOC : format::Orientation::kPerIC;
  e.cfg.has_offset = v[5] == 1;
  if (Status s = format::validate_config(e.cfg, e.n, e.k); !s) return bad(s.message());
  if (ckpt.has(key + ".scale_bits")) {
    Result<int64_t> b = ckpt.get_int(key + ".scale_bits");
    if (!b) return b.status();
    if (*b < format::kMinScaleBits || *b > format::kMaxScaleBits) {
      return Status(StatusCode::kCorrupt, ckpt.path() + ": metadata " + key + ".scale_bits: " + std::to_string(*b) +
                                              " outside " + std::to_string(format::kMinScaleBits) + ".." +
                                              std::to_string(format::kMaxScaleBits));
    }
    e.scale_bits = static_cast<int>(*b);
  }
  if (ckpt.has(key + ".uniform")) {
    Result<int64_t> u = ckpt.get_int(key + ".uniform");
    if (!u) return u.status();
    if (*u != 0 && *u != 1) return bad("uniform " + std::to_string(*u) + " (0 or 1)");
    if (*u == 1 && e.cfg.q < 2) return bad("uniform scales with q = 1");
    e.uniform = *u == 1;
  }
  if (ckpt.has(key + ".method")) {
    Result<std::string> m = ckpt.get_string(key + ".method");
    if (!m) return m.status();
    e.method = *m;
  }
  if (ckpt.has(key + ".rel_error")) {
    Result<double> r = ckpt.get_float(key + ".rel_error");
    if (!r) return r.status();
    e.rel_error = *r;
  }
  return std::optional<BcqEntry>(std::move(e));
}

Result<format::BcqMatrix> read_bcq(const io::Checkpoint& ckpt, std::string_view name) {
  Result<std::optional<BcqEntry>> e = find_bcq(ckpt, name);
  if (!e) return e.status();
  if (!e->has_value()) return Status::invalid(ckpt.path() + ": no BCQ matrix '" + std::string(name) + "'");
  const BcqEntry& entry = **e;
  Result<format::BcqMatrix> w = format::BcqMatrix{entry.n, entry.k, entry.cfg, {}, {}, {}, {}};
  const std::string base(name);
  if (Status s = read_part(ckpt, base + kBitsSuffix, io::GgmlType::I8, {w->row_bytes(), w->n, w->cfg.q}, w->bits); !s) {
    return s;
  }
  if (entry.scale_bits > 0) {
    if (Status s = read_codes(ckpt, base, entry.scale_bits, entry.uniform, *w); !s) return s;
  } else {
    if (Status s = read_fp16_scales(ckpt, base, entry.uniform ? 1 : w->cfg.q, *w); !s) return s;
    if (entry.uniform) {
      if (Status s = format::expand_uniform_alpha(w->alpha, w->cfg.q); !s) {
        return Status(StatusCode::kCorrupt, ckpt.path() + ": BCQ matrix '" + base + "': " + s.message());
      }
    }
  }
  if (Status s = format::validate(*w); !s) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": BCQ matrix '" + base + "': " + s.message());
  }
  return w;
}

Status add_bcq(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w, std::string_view method,
               double rel_error) {
  if (Status s = format::validate(w); !s) return Status(s.code(), name + ": " + s.message());
  const bool uniform = format::has_uniform_scales(w);
  const std::string key = key_of(name);
  if (Status s = add_bcq_key(out, name, w); !s) return s;
  if (uniform) {
    if (Status s = out.add_uint32(key + ".uniform", 1); !s) return s;
    require_version(out, kFormatVersionUniform);
  }
  if (w.codes.bits > 0) {
    if (Status s = add_codes(out, name, w, uniform); !s) return s;
    require_version(out, kFormatVersionCodes);
  } else if (Status s = add_fp16_scales(out, name, w, uniform); !s) {
    return s;
  }
  if (!method.empty()) {
    if (Status s = out.add_string(key + ".method", std::string(method)); !s) return s;
  }
  if (rel_error >= 0.0) {
    if (Status s = out.add_float32(key + ".rel_error", static_cast<float>(rel_error)); !s) return s;
  }
  return out.add_tensor(name + kBitsSuffix, {w.row_bytes(), w.n, w.cfg.q}, io::GgmlType::I8, w.bits);
}

Status read_scales(const io::Checkpoint& ckpt, std::string_view name, format::BcqMatrix& w) {
  return read_fp16_scales(ckpt, std::string(name), w.cfg.q, w);
}

Status read_f16(const io::Checkpoint& ckpt, const std::string& tname, const std::vector<int64_t>& dims,
                std::vector<uint16_t>& out) {
  return read_part(ckpt, tname, io::GgmlType::F16, dims, out);
}

Status add_bcq_key(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w) {
  const std::vector<int64_t> desc = {w.n, w.k, w.cfg.q, w.cfg.g, static_cast<int64_t>(w.cfg.orientation),
                                     w.cfg.has_offset ? 1 : 0};
  return out.add(key_of(name), io::GgufValue::make_int_array(io::GgufValueType::INT64, desc));
}

Status add_scales(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w) {
  if (Status s = add_bcq_key(out, name, w); !s) return s;
  return add_fp16_scales(out, name, w, false);
}

namespace {

// An int8 entry's shape: checked by read_int8 before it sizes the buffers, and by check_int8.
Status check_int8_shape(int64_t n, int64_t k) {
  if (n < 1 || k < 1 || n > (int64_t{1} << 31) || k > (int64_t{1} << 31)) {
    return Status::invalid("bad shape " + std::to_string(n) + "x" + std::to_string(k));
  }
  return Status::ok();
}

// What read_int8 and add_int8 both check of an entry's contents.
Status check_int8(const Int8Entry& e) {
  if (Status s = check_int8_shape(e.n, e.k); !s) return s;
  if (!(e.threshold > 0.0f)) return Status::invalid("outlier threshold must be > 0 (+inf: plain int8)");
  const auto nk = static_cast<size_t>(e.n * e.k);
  if (e.q.size() != nk || e.scale.size() != static_cast<size_t>(e.n)) return Status::invalid("buffer sizes do not match");
  if (e.fp16.size() != (std::isinf(e.threshold) ? 0 : nk)) {
    return Status::invalid(std::isinf(e.threshold) ? "plain int8 with an fp16 copy"
                                                   : "LLM.int8() without its fp16 copy of the weights");
  }
  for (size_t i = 0; i < nk; ++i) {
    if (e.q[i] < -127) return Status::invalid("code -128 at " + std::to_string(i) + " (codes are in [-127, 127])");
  }
  for (size_t r = 0; r < e.scale.size(); ++r) {
    if (!std::isfinite(e.scale[r]) || e.scale[r] < 0.0f) {
      return Status::invalid("scale of row " + std::to_string(r) + " is negative or not finite");
    }
  }
  for (size_t i = 0; i < e.fp16.size(); ++i) {
    if ((e.fp16[i] & 0x7c00u) == 0x7c00u) return Status::invalid("fp16 weight " + std::to_string(i) + " is not finite");
  }
  return Status::ok();
}

}  // namespace

Result<std::optional<Int8Entry>> read_int8(const io::Checkpoint& ckpt, std::string_view name) {
  const std::string key = int8_key_of(name);
  if (!ckpt.has(key)) return std::optional<Int8Entry>();
  const auto bad = [&](const std::string& why) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": int8 layer '" + std::string(name) + "': " + why);
  };
  Result<std::vector<int64_t>> a = ckpt.get_int_array(key);
  if (!a) return a.status();
  if (a->size() != 2) return bad("expected [n, k] in " + key);
  Int8Entry e;
  e.n = (*a)[0];
  e.k = (*a)[1];
  if (Status s = check_int8_shape(e.n, e.k); !s) return bad(s.message());
  Result<double> t = ckpt.get_float(key + ".threshold");
  if (!t) return t.status();
  e.threshold = static_cast<float>(*t);
  const std::string base(name);
  if (Status s = read_part(ckpt, base + ".int8_q", io::GgmlType::I8, {e.k, e.n}, e.q); !s) return s;
  if (Status s = read_part(ckpt, base + ".int8_scale", io::GgmlType::F32, {e.n}, e.scale); !s) return s;
  if (e.threshold > 0.0f && !std::isinf(e.threshold)) {
    if (Status s = read_part(ckpt, base + ".int8_fp16", io::GgmlType::F16, {e.k, e.n}, e.fp16); !s) return s;
  }
  if (Status s = check_int8(e); !s) return bad(s.message());
  return std::optional<Int8Entry>(std::move(e));
}

Status add_int8(io::GgufWriter& out, const std::string& name, const Int8Entry& e) {
  if (Status s = check_int8(e); !s) return Status(s.code(), name + ": " + s.message());
  const std::string key = int8_key_of(name);
  const std::vector<int64_t> desc = {e.n, e.k};
  if (Status s = out.add(key, io::GgufValue::make_int_array(io::GgufValueType::INT64, desc)); !s) return s;
  if (Status s = out.add_float32(key + ".threshold", e.threshold); !s) return s;
  if (Status s = out.add_tensor(name + ".int8_q", {e.k, e.n}, io::GgmlType::I8, as_bytes(e.q)); !s) return s;
  if (Status s = out.add_tensor(name + ".int8_scale", {e.n}, io::GgmlType::F32, as_bytes(e.scale)); !s) return s;
  if (!e.fp16.empty()) {
    if (Status s = out.add_tensor(name + ".int8_fp16", {e.k, e.n}, io::GgmlType::F16, as_bytes(e.fp16)); !s) return s;
  }
  return Status::ok();
}

bool has_weight(const io::Checkpoint& ckpt, std::string_view name) {
  return ckpt.find_tensor(name) != nullptr || ckpt.has(key_of(name)) || ckpt.has(int8_key_of(name)) ||
         ckpt.has(std::string(kQmoeKeyPrefix) + std::string(name));
}

std::optional<std::vector<int64_t>> weight_dims(const io::Checkpoint& ckpt, std::string_view name) {
  if (const io::TensorInfo* t = ckpt.find_tensor(name)) return t->dims;
  Result<std::optional<BcqEntry>> e = find_bcq(ckpt, name);
  if (e && e->has_value()) return std::vector<int64_t>{(*e)->k, (*e)->n};
  Result<std::vector<int64_t>> a = ckpt.get_int_array(int8_key_of(name));
  if (a && a->size() == 2) return std::vector<int64_t>{(*a)[1], (*a)[0]};
  // A QMoE matrix (lutqfile/qmoe_entry.h): [n, k, codewords].
  Result<std::vector<int64_t>> qm = ckpt.get_int_array(std::string(kQmoeKeyPrefix) + std::string(name));
  if (qm && qm->size() == 3) return std::vector<int64_t>{(*qm)[1], (*qm)[0]};
  return std::nullopt;
}

std::string expert_matrix_name(std::string_view tensor, int64_t expert) {
  constexpr std::string_view kSuffix = ".weight";
  std::string base(tensor);
  if (base.ends_with(kSuffix)) base.resize(base.size() - kSuffix.size());
  return base + "." + std::to_string(expert) + std::string(kSuffix);
}

}  // namespace lutq::lutqfile
