#include "lutqfile/adapter.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <span>

#include "core/fp16.h"

#include "io/checkpoint.h"
#include "io/gguf_writer.h"
#include "lutqfile/lutq_file.h"

namespace lutq::lutqfile {
namespace {

constexpr std::string_view kBaseKey = "lutq.adapter.base";
constexpr std::string_view kDescriptionKey = "lutq.adapter.description";

constexpr const char* kRowSuffix = ".adapter_row_alpha";

std::string codes_key(std::string_view name) { return "lutq.adapter." + std::string(name) + ".codes"; }
std::string kind_key(std::string_view name) { return "lutq.adapter." + std::string(name) + ".kind"; }

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool parse_hex16(const std::string& s, uint64_t& v) {
  if (s.size() != 16) return false;
  v = 0;
  for (const char c : s) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return true;
}

// Mixes 8 bytes at a time (multiply-xorshift), so hashing a 1.5B model's planes takes well under
// a second; not cryptographic: it tells codes apart, it does not resist forgery.
struct Hasher {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  void add(uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  void add_bytes(const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t x;
      std::memcpy(&x, p + i, 8);
      add(x);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    add(tail ^ (static_cast<uint64_t>(n - i) << 56));
  }
};

bool all_finite(const std::vector<uint16_t>& h) {
  for (const uint16_t v : h) {
    if ((v & 0x7c00u) == 0x7c00u) return false;
  }
  return true;
}

bool same_layout(const format::BcqMatrix& a, const format::BcqMatrix& b) {
  return a.n == b.n && a.k == b.k && a.cfg.q == b.cfg.q && a.cfg.g == b.cfg.g &&
         a.cfg.orientation == b.cfg.orientation && a.cfg.has_offset == b.cfg.has_offset;
}


}  // namespace

uint64_t codes_hash(const format::BcqMatrix& w) {
  Hasher h;
  h.add(static_cast<uint64_t>(w.n));
  h.add(static_cast<uint64_t>(w.k));
  h.add(static_cast<uint64_t>(w.cfg.q) | (static_cast<uint64_t>(w.cfg.orientation) << 8) |
        (static_cast<uint64_t>(w.cfg.has_offset) << 16));
  h.add(static_cast<uint64_t>(w.cfg.g));
  h.add_bytes(w.bits.data(), w.bits.size());
  return h.h;
}

uint64_t base_hash(const format::BcqMatrix& w) {
  Hasher h;
  h.add(codes_hash(w));
  h.add_bytes(reinterpret_cast<const uint8_t*>(w.alpha.data()), w.alpha.size() * sizeof(uint16_t));
  h.add_bytes(reinterpret_cast<const uint8_t*>(w.offset.data()), w.offset.size() * sizeof(uint16_t));
  return h.h;
}

Status multiply_scales(format::BcqMatrix& w, const std::vector<uint16_t>& mult) {
  const int q = w.cfg.q;
  if (mult.size() != static_cast<size_t>(scale_lines(w) * q)) return Status::invalid("row multipliers: wrong count");
  std::vector<uint16_t> out(w.alpha.size());
  for (int64_t set = 0; set < w.num_scale_sets(); ++set) {
    const size_t line = static_cast<size_t>(scale_line(w, set));
    for (int i = 0; i < q; ++i) {
      const size_t a = static_cast<size_t>(set * q + i);
      const float v = fp16_to_fp32(w.alpha[a]) * fp16_to_fp32(mult[line * static_cast<size_t>(q) + static_cast<size_t>(i)]);
      if (!(std::fabs(v) <= 65504.0f)) return Status::invalid("a scale times its row multiplier does not fit fp16");
      out[a] = fp32_to_fp16(v);
    }
  }
  w.alpha = std::move(out);
  w.codes = {};  // the scales are plain fp16 now (compressed scales do not survive tuning)
  return Status::ok();
}

Result<Adapter::Entry> Adapter::read_entry(const io::Checkpoint& ckpt, const std::string& name,
                                           const format::BcqMatrix& shape) {
  const std::string& path = ckpt.path();
  const auto bad = [&](const std::string& why) { return Status(StatusCode::kCorrupt, path + ": " + name + ": " + why); };
  Entry e;
  e.scales = shape;
  std::string kind = "full";
  if (ckpt.has(kind_key(name))) {
    Result<std::string> k = ckpt.get_string(kind_key(name));
    if (!k) return k.status();
    kind = *k;
  }
  if (kind == "row") {
    e.kind = AdapterKind::kRow;
    if (Status s = read_f16(ckpt, name + kRowSuffix, {shape.cfg.q, scale_lines(shape)}, e.mult); !s) return s;
    if (!all_finite(e.mult)) return bad("a row multiplier is not finite");
  } else if (kind == "full") {
    if (Status s = read_scales(ckpt, name, e.scales); !s) return s;
    if (!all_finite(e.scales.alpha) || !all_finite(e.scales.offset)) return bad("a scale or offset is not finite");
  } else {
    return bad("unknown adapter kind '" + kind + "' (full or row)");
  }
  Result<std::string> codes = ckpt.has(codes_key(name)) ? ckpt.get_string(codes_key(name))
                                                        : Result<std::string>(Status::invalid("missing"));
  if (!codes || !parse_hex16(*codes, e.base)) {
    return bad("metadata " + codes_key(name) + ": expected the base's hash as 16 hex digits");
  }
  return e;
}

Result<std::shared_ptr<const Adapter>> Adapter::read(const std::string& path) {
  Result<std::unique_ptr<io::Checkpoint>> opened = io::open_checkpoint(path);
  if (!opened) return opened.status();
  return from_checkpoint(**opened);
}

Result<std::shared_ptr<const Adapter>> Adapter::from_checkpoint(const io::Checkpoint& ckpt) {
  const std::string& path = ckpt.path();
  const auto bad = [&](const std::string& why) { return Status(StatusCode::kCorrupt, path + ": " + why); };
  if (ckpt.has(kVersionKey)) return Status::invalid(path + ": a lutq model file, not an adapter (lutq tune --adapter-out writes one)");
  if (!ckpt.has(kAdapterVersionKey)) return Status::invalid(path + ": not a lutq adapter (no " + std::string(kAdapterVersionKey) + ")");
  Result<int64_t> version = ckpt.get_int(kAdapterVersionKey);
  if (!version) return version.status();
  if (*version < 1 || *version > kAdapterFormatVersion) {
    return Status::unsupported(path + ": adapter format version " + std::to_string(*version) + " (this build reads 1.." +
                               std::to_string(kAdapterFormatVersion) + ")");
  }
  auto a = std::make_shared<Adapter>();
  a->path_ = path;
  if (ckpt.has(kBaseKey)) {
    Result<std::string> b = ckpt.get_string(kBaseKey);
    if (!b) return b.status();
    a->base_ = *b;
  }
  if (ckpt.has(kDescriptionKey)) {
    Result<std::string> d = ckpt.get_string(kDescriptionKey);
    if (!d) return d.status();
    a->description_ = *d;
  }
  for (const std::string& key : ckpt.keys()) {
    if (!key.starts_with(kBcqKeyPrefix)) continue;
    const std::string name = key.substr(kBcqKeyPrefix.size());
    Result<std::optional<BcqEntry>> e = find_bcq(ckpt, name);
    if (!e) return e.status();
    if (!e->has_value()) continue;  // a sub-key (lutq.bcq.N.method)
    Result<Entry> entry = read_entry(ckpt, name, format::BcqMatrix{(*e)->n, (*e)->k, (*e)->cfg, {}, {}, {}, {}});
    if (!entry) return entry.status();
    a->entries_.emplace(name, std::move(*entry));
  }
  if (a->entries_.empty()) return bad("the adapter holds no scales (no lutq.bcq.* entries)");
  return std::shared_ptr<const Adapter>(std::move(a));
}

std::vector<std::string> Adapter::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

int64_t Adapter::scale_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, e] : entries_) {
    bytes += static_cast<int64_t>((e.scales.alpha.size() + e.scales.offset.size() + e.mult.size()) * sizeof(uint16_t));
  }
  return bytes;
}

Result<bool> Adapter::apply(std::string_view name, format::BcqMatrix& w) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) return false;
  const Entry& e = it->second;
  const std::string where = path_ + ": " + std::string(name) + ": ";
  if (!same_layout(e.scales, w)) {
    return Status::invalid(where + "the adapter holds scales for a " + format::describe(e.scales) + " matrix, the model's is " +
                           format::describe(w) + " (an adapter made for another model?)");
  }
  if (e.kind == AdapterKind::kRow) {
    if (base_hash(w) != e.base) {
      return Status::invalid(where + "the model's codes or scales differ from those the row adapter was trained on "
                             "(an adapter for another base file)");
    }
    if (Status s = multiply_scales(w, e.mult); !s) return Status(s.code(), where + s.message());
    return true;
  }
  if (codes_hash(w) != e.base) {
    return Status::invalid(where + "the model's codes differ from those the adapter was trained on (codes hash " +
                           hex16(codes_hash(w)) + ", adapter " + hex16(e.base) + "): an adapter for another base file");
  }
  w.alpha = e.scales.alpha;
  w.offset = e.scales.offset;
  w.codes = {};  // the adapter's scales are fp16
  return true;
}

Status write_adapter(const std::string& path, const std::string& base, const std::string& description,
                     const std::vector<AdaptedMatrix>& matrices) {
  if (matrices.empty()) return Status::invalid(path + ": an adapter needs at least one BCQ matrix");
  io::GgufWriter out;
  if (Status s = out.add_uint32(std::string(kAdapterVersionKey), kAdapterFormatVersion); !s) return s;
  if (Status s = out.add_string(std::string(kBaseKey), base); !s) return s;
  if (Status s = out.add_string(std::string(kDescriptionKey), description); !s) return s;
  for (const AdaptedMatrix& m : matrices) {
    if (m.matrix == nullptr) return Status::invalid(path + ": " + m.name + ": no matrix");
    if (Status s = format::validate(*m.matrix); !s) return Status(s.code(), m.name + ": " + s.message());
    if (m.row_mult == nullptr) {
      if (Status s = add_scales(out, m.name, *m.matrix); !s) return Status(s.code(), path + ": " + s.message());
      if (Status s = out.add_string(codes_key(m.name), hex16(codes_hash(*m.matrix))); !s) return s;
      continue;
    }
    const format::BcqMatrix& w = *m.matrix;
    if (m.row_mult->size() != static_cast<size_t>(scale_lines(w) * w.cfg.q)) {
      return Status::invalid(path + ": " + m.name + ": row multipliers of the wrong count");
    }
    if (Status s = add_bcq_key(out, m.name, w); !s) return s;
    if (Status s = out.add_string(kind_key(m.name), "row"); !s) return s;
    if (Status s = out.add_string(codes_key(m.name), hex16(base_hash(w))); !s) return s;
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(m.row_mult->data()), m.row_mult->size() * 2);
    if (Status s = out.add_tensor(m.name + kRowSuffix, {w.cfg.q, scale_lines(w)}, io::GgmlType::F16, bytes); !s) return s;
  }
  return out.write_file(path);
}

}  // namespace lutq::lutqfile
