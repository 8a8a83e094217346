#include "lutqfile/adapter.h"

#include <cstdio>
#include <cstring>

#include "io/checkpoint.h"
#include "io/gguf_writer.h"
#include "lutqfile/lutq_file.h"

namespace lutq::lutqfile {
namespace {

constexpr std::string_view kBaseKey = "lutq.adapter.base";
constexpr std::string_view kDescriptionKey = "lutq.adapter.description";

std::string codes_key(std::string_view name) { return "lutq.adapter." + std::string(name) + ".codes"; }

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
    format::BcqMatrix w{(*e)->n, (*e)->k, (*e)->cfg, {}, {}, {}};
    if (Status s = read_scales(ckpt, name, w); !s) return s;
    if (!all_finite(w.alpha) || !all_finite(w.offset)) return bad(name + ": a scale or offset is not finite");
    Entry entry{std::move(w), 0};
    Result<std::string> codes = ckpt.has(codes_key(name)) ? ckpt.get_string(codes_key(name))
                                                          : Result<std::string>(Status::invalid("missing"));
    if (!codes || !parse_hex16(*codes, entry.codes)) {
      return bad("metadata " + codes_key(name) + ": expected the base's codes hash as 16 hex digits");
    }
    a->entries_.emplace(name, std::move(entry));
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
    bytes += static_cast<int64_t>((e.scales.alpha.size() + e.scales.offset.size()) * sizeof(uint16_t));
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
  if (codes_hash(w) != e.codes) {
    return Status::invalid(where + "the model's codes differ from those the adapter was trained on (codes hash " +
                           hex16(codes_hash(w)) + ", adapter " + hex16(e.codes) + "): an adapter for another base file");
  }
  w.alpha = e.scales.alpha;
  w.offset = e.scales.offset;
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
    if (Status s = add_scales(out, m.name, *m.matrix); !s) return Status(s.code(), path + ": " + s.message());
    if (Status s = out.add_string(codes_key(m.name), hex16(codes_hash(*m.matrix))); !s) return s;
  }
  return out.write_file(path);
}

}  // namespace lutq::lutqfile
