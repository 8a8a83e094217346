// The memory kinds: one row each (name, size, factory).
#include "model/memory.h"

#include <array>
#include <cstdio>

#include "model/memory/f32_memory.h"

namespace lutq::model {
namespace {

struct MemoryDef {
  MemoryKind kind;
  const char* name;
  int64_t (*bytes)(const MemoryShape&);
  std::unique_ptr<Memory> (*make)(const MemoryShape&);
};

constexpr std::array<MemoryDef, 1> kMemoryKinds = {{
    {MemoryKind::kF32, "f32", f32_memory_bytes, make_f32_memory},
}};

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

Result<MemoryKind> parse_memory_kind(std::string_view name) {
  std::string known;
  for (const MemoryDef& d : kMemoryKinds) {
    if (name == d.name) return d.kind;
    known += (known.empty() ? "" : ", ") + std::string(d.name);
  }
  return Status::invalid("unknown KV cache kind '" + std::string(name) + "' (supported: " + known + ")");
}

int64_t memory_bytes(MemoryKind kind, const MemoryShape& shape) { return def(kind).bytes(shape); }

Result<std::unique_ptr<Memory>> make_memory(MemoryKind kind, const MemoryShape& s) {
  if (s.n_layer < 1 || s.n_head < 1 || s.n_head_kv < 1 || s.head_dim < 1 || s.n_head % s.n_head_kv != 0) {
    return Status::invalid("memory: bad attention shape");
  }
  if (s.capacity < 1 || s.sequences < 1) {
    return Status::invalid("memory: capacity (" + std::to_string(s.capacity) + ") and sequences (" +
                           std::to_string(s.sequences) + ") must be at least 1");
  }
  // In double: a hostile capacity must not overflow the product before the check.
  const double bytes = static_cast<double>(def(kind).bytes(MemoryShape{s.n_layer, s.n_embd, s.n_head, s.n_head_kv,
                                                                        s.head_dim, 1, 1})) *
                       static_cast<double>(s.capacity) * static_cast<double>(s.sequences);
  if (bytes > kMaxMemoryBytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return Status(StatusCode::kOutOfMemory, std::string("KV cache of ") + std::to_string(s.sequences) + " x " +
                                                std::to_string(s.capacity) + " positions would need " + buf);
  }
  return def(kind).make(s);
}

}  // namespace lutq::model
