// The memory kinds: one row each (name, size, factory).
#include "model/memory.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "model/memory/f32_memory.h"
#include "model/memory/kinds.h"

namespace lutq::model {
namespace {

struct MemoryDef {
  MemoryKind kind;
  const char* name;
  int64_t (*bytes)(const MemoryShape&, const MemoryOptions&);
  std::unique_ptr<Memory> (*make)(const MemoryShape&, const MemoryOptions&);
};

int64_t f32_bytes(const MemoryShape& s, const MemoryOptions&) { return f32_memory_bytes(s); }
std::unique_ptr<Memory> f32_make(const MemoryShape& s, const MemoryOptions&) { return make_f32_memory(s); }

constexpr std::array<MemoryDef, 6> kMemoryKinds = {{
    {MemoryKind::kF32, "f32", f32_bytes, f32_make},
    {MemoryKind::kF16, "f16", f16_memory_bytes, make_f16_memory},
    {MemoryKind::kQ8, "q8", q8_memory_bytes, make_q8_memory},
    {MemoryKind::kQ4, "q4", q4_memory_bytes, make_q4_memory},
    {MemoryKind::kXQuant, "xquant", xquant_memory_bytes, make_xquant_memory},
    {MemoryKind::kXQuantCl, "xquant-cl", xquant_cl_memory_bytes, make_xquant_cl_memory},
}};

bool is_xquant(MemoryKind kind) { return kind == MemoryKind::kXQuant || kind == MemoryKind::kXQuantCl; }

const MemoryDef& def(MemoryKind kind) {
  for (const MemoryDef& d : kMemoryKinds) {
    if (d.kind == kind) return d;
  }
  return kMemoryKinds[0];
}

// A cache past this is refused up front rather than left to fail in the allocator.
constexpr double kMaxMemoryBytes = 64.0 * 1024 * 1024 * 1024;

}  // namespace

void Memory::truncate(int32_t seq, int64_t n) {
  int64_t& size = sizes_[static_cast<size_t>(seq)];
  size = n < size ? (n < 0 ? 0 : n) : size;
}

const char* memory_kind_name(MemoryKind kind) { return def(kind).name; }

bool rebuilds_from_layer_inputs(MemoryKind kind) { return is_xquant(kind); }

Result<MemoryKind> parse_memory_kind(std::string_view name) {
  std::string known;
  for (const MemoryDef& d : kMemoryKinds) {
    if (name == d.name) return d.kind;
    known += (known.empty() ? "" : ", ") + std::string(d.name);
  }
  return Status::invalid("unknown KV cache kind '" + std::string(name) + "' (supported: " + known + ")");
}

// The XQuant basis layouts as written after the bit width: "xquant:4:head".
constexpr std::pair<std::string_view, XQuantBasis> kBasisNames[] = {
    {"joint", XQuantBasis::kJoint}, {"split", XQuantBasis::kSplit}, {"head", XQuantBasis::kPerHead},
    {"head-keys", XQuantBasis::kHeadKeys}};

Result<MemorySpec> parse_memory_spec(std::string_view text) {
  const size_t colon = text.find(':');
  Result<MemoryKind> kind = parse_memory_kind(text.substr(0, colon));
  if (!kind) return kind.status();
  MemorySpec spec{*kind, {}};
  if (colon == std::string_view::npos) return spec;
  const std::string_view rest = text.substr(colon + 1);
  const size_t second = rest.find(':');
  const std::string bits(rest.substr(0, second));
  if (!is_xquant(*kind)) {
    return Status::invalid("KV cache kind '" + std::string(text) + "': only xquant and xquant-cl take a bit width");
  }
  if (bits.empty() || bits.size() > 2 || bits.find_first_not_of("0123456789") != std::string::npos) {
    return Status::invalid("KV cache kind '" + std::string(text) + "': the bit width must be 2..8 or 32");
  }
  spec.options.x_bits = std::stoi(bits);
  if (second != std::string_view::npos) {
    const std::string_view basis = rest.substr(second + 1);
    const auto it = std::find_if(std::begin(kBasisNames), std::end(kBasisNames),
                                 [&](const auto& b) { return basis == b.first; });
    if (it == std::end(kBasisNames) || *kind != MemoryKind::kXQuant) {
      return Status::invalid("KV cache kind '" + std::string(text) +
                             "': xquant's basis is joint, split, head or head-keys (xquant-cl takes only joint)");
    }
    spec.options.basis = it->second;
  }
  if (Status st = check_memory_options(spec.options); !st) return st;
  return spec;
}

std::string memory_spec_name(const MemorySpec& spec) {
  std::string name = memory_kind_name(spec.kind);
  const bool basis = spec.kind == MemoryKind::kXQuant && spec.options.basis != XQuantBasis::kJoint;
  if (is_xquant(spec.kind) && (basis || spec.options.x_bits != MemoryOptions{}.x_bits)) {
    name += ":" + std::to_string(spec.options.x_bits);
  }
  for (const auto& [n, b] : kBasisNames) {
    if (basis && b == spec.options.basis) name += ":" + std::string(n);
  }
  return name;
}

Status check_memory_options(const MemoryOptions& o) {
  if (!(o.x_bits == 32 || (o.x_bits >= 2 && o.x_bits <= 8))) {
    return Status::invalid("memory: XQuant bit width " + std::to_string(o.x_bits) + " (2..8, or 32 for fp32)");
  }
  if (o.cl_anchor < 1) return Status::invalid("memory: XQuant-CL anchor interval must be at least 1");
  return Status::ok();
}

int64_t memory_bytes(MemoryKind kind, const MemoryShape& shape, const MemoryOptions& options) {
  return def(kind).bytes(shape, options);
}

int64_t sequences_in_budget(MemoryKind kind, const MemoryShape& shape, const MemoryOptions& options,
                            double budget_bytes) {
  MemoryShape s = shape;
  s.sequences = 1;
  const auto one = static_cast<double>(def(kind).bytes(s, options));
  s.sequences = 2;
  const double per_sequence = static_cast<double>(def(kind).bytes(s, options)) - one;
  const double n = (budget_bytes - (one - per_sequence)) / per_sequence;
  return n < 1.0 ? 0 : static_cast<int64_t>(n);
}

Result<std::unique_ptr<Memory>> make_memory(MemoryKind kind, const MemoryShape& s, const MemoryOptions& options) {
  if (Status st = check_memory_options(options); !st) return st;
  if (s.n_layer < 1 || s.n_head < 1 || s.n_head_kv < 1 || s.head_dim < 1 || s.n_head % s.n_head_kv != 0) {
    return Status::invalid("memory: bad attention shape");
  }
  if (s.capacity < 1 || s.sequences < 1) {
    return Status::invalid("memory: capacity (" + std::to_string(s.capacity) + ") and sequences (" +
                           std::to_string(s.sequences) + ") must be at least 1");
  }
  // In double: a hostile capacity must not overflow the product before the check.
  // bytes(capacity, sequences) = fixed + sequences·(per_sequence + capacity·per_position)
  // (XQuant's bases are fixed, the q4 / XQuant windows per sequence), fitted on small shapes.
  const auto at = [&](int64_t capacity, int64_t sequences) {
    return static_cast<double>(
        def(kind).bytes(MemoryShape{s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim, capacity, sequences},
                        options));
  };
  const double per_position = (at(512, 1) - at(256, 1)) / 256.0;
  const double per_sequence = at(256, 2) - at(256, 1) - 256.0 * per_position;
  const double fixed = at(256, 1) - per_sequence - 256.0 * per_position;
  const double bytes = fixed + static_cast<double>(s.sequences) *
                                   (per_sequence + static_cast<double>(s.capacity) * per_position);
  if (bytes > kMaxMemoryBytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return Status(StatusCode::kOutOfMemory, std::string("KV cache of ") + std::to_string(s.sequences) + " x " +
                                                std::to_string(s.capacity) + " positions would need " + buf);
  }
  return def(kind).make(s, options);
}

}  // namespace lutq::model
