#include "lutqfile/qmoe_entry.h"

#include <span>
#include <vector>

namespace lutq::lutqfile {
namespace {

template <typename T>
std::span<const uint8_t> as_bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

std::string key_of(std::string_view name) { return std::string(kQmoeKeyPrefix) + std::string(name); }
std::string dict_key_of(std::string_view name) { return std::string(kQmoeDictKeyPrefix) + std::string(name); }
std::string dict_tensor(std::string_view name, const char* part) { return "qmoe_dict." + std::string(name) + part; }

// The bytes of tensor `tname` after checking its type and dims.
Result<std::span<const uint8_t>> tensor(const io::Checkpoint& ckpt, const std::string& tname, io::GgmlType type,
                                        const std::vector<int64_t>& dims) {
  const io::TensorInfo* t = ckpt.find_tensor(tname);
  if (t == nullptr) return Status(StatusCode::kCorrupt, ckpt.path() + ": missing tensor '" + tname + "'");
  if (t->type != type || t->dims != dims) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": tensor '" + tname + "' has type " +
                                            io::ggml_type_name(t->type) + " and other dims than its lutq entry implies");
  }
  return ckpt.tensor_bytes(*t);
}

}  // namespace

Status add_qmoe_dictionary(io::GgufWriter& out, const std::string& dict_name, const format::QmoeDictionary& d) {
  if (Status s = format::validate(d); !s) return Status(s.code(), dict_name + ": " + s.message());
  const std::vector<int64_t> desc = {d.size()};
  if (Status s = out.add(dict_key_of(dict_name), io::GgufValue::make_int_array(io::GgufValueType::INT64, desc)); !s) return s;
  if (Status s = out.add_tensor(dict_tensor(dict_name, ".len"), {d.size()}, io::GgmlType::I8, as_bytes(d.len)); !s) return s;
  if (Status s = out.add_tensor(dict_tensor(dict_name, ".pos"), {d.size()}, io::GgmlType::I32, as_bytes(d.pos)); !s) return s;
  return out.add_tensor(dict_tensor(dict_name, ".neg"), {d.size()}, io::GgmlType::I32, as_bytes(d.neg));
}

Status add_qmoe(io::GgufWriter& out, const std::string& name, const format::QmoeMatrix& m, const std::string& dict_name) {
  if (Status s = format::validate(m); !s) return Status(s.code(), name + ": " + s.message());
  const auto codes = static_cast<int64_t>(m.codes.size());
  const std::vector<int64_t> desc = {m.n, m.k, codes};
  const std::string key = key_of(name);
  if (Status s = out.add(key, io::GgufValue::make_int_array(io::GgufValueType::INT64, desc)); !s) return s;
  if (Status s = out.add_string(key + ".dict", dict_name); !s) return s;
  if (Status s = out.add_tensor(name + ".qmoe_scale", {m.n}, io::GgmlType::F16, as_bytes(m.scale)); !s) return s;
  if (Status s = out.add_tensor(name + ".qmoe_offsets", {m.n + 1}, io::GgmlType::I32, as_bytes(m.row_offset)); !s) return s;
  // GGUF dims are > 0: an all-empty code stream (impossible for k >= 1) never occurs.
  return out.add_tensor(name + ".qmoe_codes", {codes}, io::GgmlType::I16, as_bytes(m.codes));
}

Result<std::shared_ptr<const format::QmoeDictionary>> QmoeDictionaries::get(const io::Checkpoint& ckpt,
                                                                            const std::string& dict_name) {
  if (auto it = held_.find(dict_name); it != held_.end()) return it->second;
  const std::string key = dict_key_of(dict_name);
  const auto bad = [&](const std::string& why) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": qmoe dictionary '" + dict_name + "': " + why);
  };
  if (!ckpt.has(key)) return bad("missing (no metadata " + key + ")");
  Result<std::vector<int64_t>> a = ckpt.get_int_array(key);
  if (!a) return a.status();
  if (a->size() != 1 || (*a)[0] < 3 || (*a)[0] > format::kQmoeMaxEntries) return bad("expected [entries] in 3..65536");
  const int64_t d = (*a)[0];
  Result<std::span<const uint8_t>> len = tensor(ckpt, dict_tensor(dict_name, ".len"), io::GgmlType::I8, {d});
  Result<std::span<const uint8_t>> pos = tensor(ckpt, dict_tensor(dict_name, ".pos"), io::GgmlType::I32, {d});
  Result<std::span<const uint8_t>> neg = tensor(ckpt, dict_tensor(dict_name, ".neg"), io::GgmlType::I32, {d});
  if (!len) return len.status();
  if (!pos) return pos.status();
  if (!neg) return neg.status();
  Result<format::QmoeDictionary> dict = format::dictionary_from_bytes(*len, *pos, *neg);
  if (!dict) return bad(dict.status().message());
  auto shared = std::make_shared<const format::QmoeDictionary>(std::move(*dict));
  held_.emplace(dict_name, shared);
  return shared;
}

bool has_qmoe(const io::Checkpoint& ckpt, std::string_view name) { return ckpt.has(key_of(name)); }

Result<std::optional<format::QmoeMatrix>> read_qmoe(const io::Checkpoint& ckpt, std::string_view name,
                                                    QmoeDictionaries& dicts) {
  const std::string key = key_of(name);
  if (!ckpt.has(key)) return std::optional<format::QmoeMatrix>();
  const std::string base(name);
  const auto bad = [&](const std::string& why) {
    return Status(StatusCode::kCorrupt, ckpt.path() + ": qmoe matrix '" + base + "': " + why);
  };
  Result<std::vector<int64_t>> a = ckpt.get_int_array(key);
  if (!a) return a.status();
  const std::vector<int64_t>& v = *a;
  if (v.size() != 3) return bad("expected [n, k, codewords] in " + key);
  if (v[0] < 1 || v[1] < 1 || v[0] > (int64_t{1} << 31) || v[1] > (int64_t{1} << 31) || v[2] < 1 || v[2] > (int64_t{1} << 32)) {
    return bad("bad shape or codeword count");
  }
  Result<std::string> dict_name = ckpt.get_string(key + ".dict");
  if (!dict_name) return bad(dict_name.status().message());
  Result<std::shared_ptr<const format::QmoeDictionary>> dict = dicts.get(ckpt, *dict_name);
  if (!dict) return bad(dict.status().message());
  Result<std::span<const uint8_t>> scale = tensor(ckpt, base + ".qmoe_scale", io::GgmlType::F16, {v[0]});
  Result<std::span<const uint8_t>> off = tensor(ckpt, base + ".qmoe_offsets", io::GgmlType::I32, {v[0] + 1});
  Result<std::span<const uint8_t>> codes = tensor(ckpt, base + ".qmoe_codes", io::GgmlType::I16, {v[2]});
  if (!scale) return scale.status();
  if (!off) return off.status();
  if (!codes) return codes.status();
  Result<format::QmoeMatrix> m = format::matrix_from_bytes(v[0], v[1], *scale, *off, *codes, *dict);
  if (!m) return bad(m.status().message());
  return std::optional<format::QmoeMatrix>(std::move(*m));
}

}  // namespace lutq::lutqfile
