#include "model/step_broadcast.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "model/model.h"

namespace lutq::model {

const char* step_kind_name(StepKind kind) {
  switch (kind) {
    case StepKind::kMakeMemory: return "make memory";
    case StepKind::kForward: return "forward";
    case StepKind::kTruncate: return "truncate";
    case StepKind::kStop: return "stop";
  }
  return "?";
}

namespace {

constexpr uint32_t kStepMagic = 0x3153514cu;  // "LQS1" as bytes in memory
constexpr uint32_t kLogitsFlag = 1u;
constexpr int kMaxMemoryKind = static_cast<int>(MemoryKind::kXQuantCl);

template <typename T>
void put(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

// Reads the message front to back; each get() is bounds-checked by the callers' size checks.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    T value{};
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
};

bool fits_i32(int64_t v) { return v >= 0 && v <= std::numeric_limits<int32_t>::max(); }

Status bad_step(const std::string& what) { return Status::invalid("step message: " + what); }

// The header's fields, validated.
struct Header {
  StepKind kind = StepKind::kStop;
  uint16_t memory_kind = 0;
  uint32_t memory = 0;
  uint32_t rows = 0;
  int64_t a = 0, b = 0;
  int32_t x_bits = 0, cl_anchor = 0;
};

Result<Header> read_header(std::span<const uint8_t> bytes) {
  if (static_cast<int64_t>(bytes.size()) < kStepHeaderBytes) {
    return bad_step(std::to_string(bytes.size()) + " bytes, shorter than the " + std::to_string(kStepHeaderBytes) +
                    "-byte header");
  }
  Reader r(bytes);
  if (const auto magic = r.get<uint32_t>(); magic != kStepMagic) return bad_step("bad magic (not a step header)");
  Header h;
  const auto kind = r.get<uint16_t>();
  if (kind < static_cast<uint16_t>(StepKind::kMakeMemory) || kind > static_cast<uint16_t>(StepKind::kStop)) {
    return bad_step("unknown kind " + std::to_string(kind));
  }
  h.kind = static_cast<StepKind>(kind);
  h.memory_kind = r.get<uint16_t>();
  h.memory = r.get<uint32_t>();
  h.rows = r.get<uint32_t>();
  h.a = r.get<int64_t>();
  h.b = r.get<int64_t>();
  h.x_bits = r.get<int32_t>();
  h.cl_anchor = r.get<int32_t>();
  if (h.memory_kind > kMaxMemoryKind) return bad_step("unknown memory kind " + std::to_string(h.memory_kind));
  const bool forward = h.kind == StepKind::kForward;
  if (forward && (h.rows == 0 || h.rows > kStepMaxRows)) {
    return bad_step("a forward of " + std::to_string(h.rows) + " rows (1.." + std::to_string(kStepMaxRows) + ")");
  }
  if (!forward && h.rows != 0) return bad_step(std::string(step_kind_name(h.kind)) + " with rows");
  return h;
}

}  // namespace

Result<std::vector<uint8_t>> encode_step(const Step& step) {
  const bool forward = step.kind == StepKind::kForward;
  if (forward && (step.rows.empty() || static_cast<int64_t>(step.rows.size()) > kStepMaxRows)) {
    return bad_step("a forward needs 1.." + std::to_string(kStepMaxRows) + " rows, not " +
                    std::to_string(step.rows.size()));
  }
  if (!forward && !step.rows.empty()) return bad_step(std::string(step_kind_name(step.kind)) + " with rows");
  if (step.options.cl_anchor < 0 || step.options.cl_anchor > std::numeric_limits<int32_t>::max()) {
    return bad_step("cl_anchor " + std::to_string(step.options.cl_anchor) + " out of range");
  }
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(kStepHeaderBytes + kStepRowBytes * static_cast<int64_t>(step.rows.size())));
  put(out, kStepMagic);
  put(out, static_cast<uint16_t>(step.kind));
  put(out, static_cast<uint16_t>(step.memory_kind));
  put(out, step.memory);
  put(out, static_cast<uint32_t>(step.rows.size()));
  const bool make = step.kind == StepKind::kMakeMemory;
  const bool trunc = step.kind == StepKind::kTruncate;
  put(out, make ? step.capacity : trunc ? int64_t{step.seq} : int64_t{0});
  put(out, make ? step.sequences : trunc ? step.length : int64_t{0});
  put(out, static_cast<int32_t>(step.options.x_bits));
  put(out, static_cast<int32_t>(step.options.cl_anchor));
  for (const BatchRow& row : step.rows) {
    if (!fits_i32(row.pos) || row.token < 0 || row.seq < 0) {
      return bad_step("row (token " + std::to_string(row.token) + ", seq " + std::to_string(row.seq) + ", pos " +
                      std::to_string(row.pos) + ") out of range");
    }
    put(out, row.token);
    put(out, row.seq);
    put(out, static_cast<int32_t>(row.pos));
    put(out, row.logits ? kLogitsFlag : 0u);
  }
  return out;
}

Result<int64_t> step_body_bytes(std::span<const uint8_t> header) {
  if (static_cast<int64_t>(header.size()) != kStepHeaderBytes) {
    return bad_step("a header of " + std::to_string(header.size()) + " bytes, not " + std::to_string(kStepHeaderBytes));
  }
  Result<Header> h = read_header(header);
  if (!h) return h.status();
  return static_cast<int64_t>(h->rows) * kStepRowBytes;
}

Result<Step> decode_step(std::span<const uint8_t> message) {
  Result<Header> h = read_header(message);
  if (!h) return h.status();
  const int64_t want = kStepHeaderBytes + static_cast<int64_t>(h->rows) * kStepRowBytes;
  if (static_cast<int64_t>(message.size()) != want) {
    return bad_step(std::to_string(message.size()) + " bytes where the header announces " + std::to_string(want));
  }
  Step s;
  s.kind = h->kind;
  s.memory = h->memory;
  s.memory_kind = static_cast<MemoryKind>(h->memory_kind);
  s.options.x_bits = h->x_bits;
  s.options.cl_anchor = h->cl_anchor;
  if (s.kind == StepKind::kMakeMemory) {
    if (h->a < 1 || h->b < 1) return bad_step("a memory of " + std::to_string(h->b) + " x " + std::to_string(h->a));
    s.capacity = h->a;
    s.sequences = h->b;
  } else if (s.kind == StepKind::kTruncate) {
    if (!fits_i32(h->a) || h->b < 0) return bad_step("truncate of sequence " + std::to_string(h->a));
    s.seq = static_cast<int32_t>(h->a);
    s.length = h->b;
  }
  Reader r(message.subspan(static_cast<size_t>(kStepHeaderBytes)));
  s.rows.resize(h->rows);
  for (BatchRow& row : s.rows) {
    row.token = r.get<int32_t>();
    row.seq = r.get<int32_t>();
    row.pos = r.get<int32_t>();
    const auto flags = r.get<uint32_t>();
    if ((flags & ~kLogitsFlag) != 0 || row.token < 0 || row.seq < 0 || row.pos < 0) {
      return bad_step("a row with token " + std::to_string(row.token) + ", seq " + std::to_string(row.seq) + ", pos " +
                      std::to_string(row.pos) + ", flags " + std::to_string(flags));
    }
    row.logits = (flags & kLogitsFlag) != 0;
  }
  return s;
}

}  // namespace lutq::model
