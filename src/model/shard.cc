#include "model/shard.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "format/scale_codes.h"

namespace lutq::model {
namespace {

std::string range(int64_t b, int64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + ")"; }

// [begin, end) of rank r when `units` are spread over `size` ranks as evenly as whole units allow.
std::pair<int64_t, int64_t> balanced(int64_t units, int rank, int size) {
  return {units * rank / size, units * (rank + 1) / size};
}

// [begin, end) of rank r over `total` cut in units of the largest of 256/128/64/32 that gives
// every rank at least one unit (whole BCQ groups), else of 1.
std::pair<int64_t, int64_t> split_in_units(int64_t total, int rank, int size) {
  int64_t unit = 1;
  for (int64_t u : {256, 128, 64, 32}) {
    if (total % u == 0 && total / u >= size) {
      unit = u;
      break;
    }
  }
  const auto [b, e] = balanced(total / unit, rank, size);
  return {b * unit, e * unit};
}

// Copies bits [c0, c0 + len) of each row of one plane into rows of `row_bytes` (padding zero).
void copy_plane_cols(const format::BcqMatrix& w, int plane, int64_t c0, int64_t len, int64_t row_bytes,
                     uint8_t* dst) {
  for (int64_t r = 0; r < w.n; ++r) {
    uint8_t* out = dst + r * row_bytes;
    if (c0 % 8 == 0) {
      const uint8_t* src = w.bits.data() + (plane * w.n + r) * w.row_bytes() + c0 / 8;
      std::memcpy(out, src, static_cast<size_t>(row_bytes));
      if (len % 8 != 0) out[row_bytes - 1] &= static_cast<uint8_t>((1u << (len % 8)) - 1u);
      continue;
    }
    std::memset(out, 0, static_cast<size_t>(row_bytes));
    for (int64_t c = 0; c < len; ++c) {
      if (w.bit(plane, r, c0 + c)) out[c / 8] |= static_cast<uint8_t>(1u << (c % 8));
    }
  }
}

// The grouped axis of w must be cut at multiples of its group size.
Status check_groups(const format::BcqMatrix& w, const TensorSlice& s, const std::string& name) {
  const bool per_oc = w.cfg.orientation == format::Orientation::kPerOC;
  const bool cut_grouped_axis = (s.axis == SplitAxis::kCols) == per_oc;
  if (!cut_grouped_axis) return Status::ok();
  const int64_t g = w.cfg.g;
  if (s.begin % g == 0 && s.end % g == 0) return Status::ok();
  return Status::invalid("tensor '" + name + "': this rank's " + (s.axis == SplitAxis::kCols ? "columns " : "rows ") +
                         range(s.begin, s.end) + " do not start and end on its " +
                         format::orientation_name(w.cfg.orientation) + " groups of " + std::to_string(g) +
                         "; tensor parallelism needs a shard boundary on a group boundary (use another number of "
                         "ranks, or a file quantized with smaller groups)");
}

uint64_t fnv1a(const char* data, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

Result<ShardPlan> plan_shard(const ModelConfig& full, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    return Status::invalid("tensor parallelism: rank " + std::to_string(rank) + " of " + std::to_string(size));
  }
  if (size > full.n_head_kv) {
    return Status::invalid("tensor parallelism: cannot split " + std::to_string(full.n_head_kv) + " KV heads over " +
                           std::to_string(size) + " ranks (each rank needs at least one whole KV head; at most " +
                           std::to_string(full.n_head_kv) + " ranks)");
  }
  ShardPlan p;
  p.rank = rank;
  p.size = size;
  p.n_rep = full.n_rep();
  std::tie(p.kv_begin, p.kv_end) = balanced(full.n_head_kv, rank, size);
  std::tie(p.ff_begin, p.ff_end) = split_in_units(full.n_ff, rank, size);
  for (int r = 0; r < size; ++r) {
    const auto [v0, v1] = split_in_units(full.n_vocab, r, size);
    p.vocab_counts.push_back(v1 - v0);
    if (r == rank) std::tie(p.vocab_begin, p.vocab_end) = std::pair(v0, v1);
  }
  return p;
}

ModelConfig local_config(const ModelConfig& full, const ShardPlan& plan) {
  ModelConfig c = full;
  c.n_head_kv = plan.kv_end - plan.kv_begin;
  c.n_head = c.n_head_kv * plan.n_rep;
  c.n_ff = plan.ff_end - plan.ff_begin;
  return c;
}

TensorSlice slice_for(const ShardPlan& plan, const ModelConfig& full, LinearRole role) {
  const int64_t hd = full.head_dim;
  const int64_t q0 = plan.kv_begin * plan.n_rep * hd;
  const int64_t q1 = plan.kv_end * plan.n_rep * hd;
  const bool first = plan.rank == 0;
  switch (role) {
    case LinearRole::kAttnQ: return {SplitAxis::kRows, q0, q1, true};
    case LinearRole::kAttnK:
    case LinearRole::kAttnV: return {SplitAxis::kRows, plan.kv_begin * hd, plan.kv_end * hd, true};
    case LinearRole::kAttnOutput: return {SplitAxis::kCols, q0, q1, first};
    case LinearRole::kFfnGate:
    case LinearRole::kFfnUp: return {SplitAxis::kRows, plan.ff_begin, plan.ff_end, true};
    case LinearRole::kFfnDown: return {SplitAxis::kCols, plan.ff_begin, plan.ff_end, first};
    default: return {};
  }
}

TensorSlice head_slice(const ShardPlan& plan) { return {SplitAxis::kRows, plan.vocab_begin, plan.vocab_end, true}; }

std::vector<float> slice_dense(const std::vector<float>& w, int64_t n, int64_t k, const TensorSlice& s) {
  if (s.axis == SplitAxis::kNone) return w;
  const int64_t len = s.end - s.begin;
  if (s.axis == SplitAxis::kRows) {
    return std::vector<float>(w.begin() + s.begin * k, w.begin() + s.end * k);
  }
  std::vector<float> out(static_cast<size_t>(n * len));
  for (int64_t r = 0; r < n; ++r) {
    std::copy_n(w.data() + r * k + s.begin, len, out.data() + r * len);
  }
  return out;
}

std::vector<float> slice_bias(std::vector<float> bias, const TensorSlice& s) {
  if (s.axis == SplitAxis::kRows) {
    return std::vector<float>(bias.begin() + s.begin, bias.begin() + s.end);
  }
  if (!s.bias_here) return {};
  return bias;
}

namespace {

// The compressed scales of a slice (its alpha/offset already copied): each kept scale set keeps
// its codes and each kept line its super scales and offset range, so they decode to the same
// scales and the SIMD layouts keep them as codes.
void slice_codes(const format::BcqMatrix& w, const TensorSlice& s, format::BcqMatrix& out) {
  const bool rows = s.axis == SplitAxis::kRows;
  const bool per_oc = w.cfg.orientation == format::Orientation::kPerOC;
  const auto q = static_cast<size_t>(w.cfg.q);
  const format::ScaleCodes& from = w.codes;
  format::ScaleCodes& to = out.codes;
  to.bits = from.bits;
  const auto sets = static_cast<size_t>(out.num_scale_sets());
  const auto lines = static_cast<size_t>(format::num_lines(out));
  to.alpha_code.resize(sets * q);
  to.alpha_super.resize(lines * q);
  if (w.cfg.has_offset) {
    to.offset_code.resize(sets);
    to.offset_range.resize(lines * 2);
  }
  const int64_t g = out.cfg.g;
  for (int64_t r = 0; r < out.n; r += per_oc ? 1 : g) {
    for (int64_t c = 0; c < out.k; c += per_oc ? g : 1) {
      const auto src = static_cast<size_t>(w.scale_set(rows ? r + s.begin : r, rows ? c : c + s.begin));
      const auto dst = static_cast<size_t>(out.scale_set(r, c));
      std::copy_n(from.alpha_code.begin() + static_cast<std::ptrdiff_t>(src * q), q,
                  to.alpha_code.begin() + static_cast<std::ptrdiff_t>(dst * q));
      if (w.cfg.has_offset) to.offset_code[dst] = from.offset_code[src];
    }
  }
  // Lines: rows per-OC, columns per-IC; the slice's line l is the source's line l (+ begin where
  // the cut runs along the lines).
  const bool lines_cut = rows == per_oc;
  for (size_t l = 0; l < lines; ++l) {
    const size_t src = l + (lines_cut ? static_cast<size_t>(s.begin) : 0);
    std::copy_n(from.alpha_super.begin() + static_cast<std::ptrdiff_t>(src * q), q,
                to.alpha_super.begin() + static_cast<std::ptrdiff_t>(l * q));
    if (w.cfg.has_offset) {
      to.offset_range[l * 2] = from.offset_range[src * 2];
      to.offset_range[l * 2 + 1] = from.offset_range[src * 2 + 1];
    }
  }
}

}  // namespace

Result<format::BcqMatrix> slice_bcq(const format::BcqMatrix& w, const TensorSlice& s, const std::string& name) {
  if (s.axis == SplitAxis::kNone) return w;
  if (Status st = check_groups(w, s, name); !st) return st;
  const bool rows = s.axis == SplitAxis::kRows;
  const bool per_oc = w.cfg.orientation == format::Orientation::kPerOC;
  const int64_t n = rows ? s.end - s.begin : w.n;
  const int64_t k = rows ? w.k : s.end - s.begin;
  format::BcqConfig cfg = w.cfg;
  if (cfg.g == (per_oc ? w.k : w.n)) cfg.g = per_oc ? k : n;  // a full-extent group stays full-extent
  Result<format::BcqMatrix> out = format::make_empty(n, k, cfg);
  if (!out) return Status(out.status().code(), "tensor '" + name + "': " + out.status().message());
  const int64_t q = cfg.q;
  const int64_t rb = out->row_bytes();
  for (int plane = 0; plane < cfg.q; ++plane) {
    uint8_t* dst = out->bits.data() + plane * n * rb;
    if (rows) {
      std::memcpy(dst, w.bits.data() + (plane * w.n + s.begin) * w.row_bytes(), static_cast<size_t>(n * rb));
    } else {
      copy_plane_cols(w, plane, s.begin, k, rb, dst);
    }
  }
  // Scale sets of the output cell (r, c) in the output matrix come from the input's cell.
  for (int64_t r = 0; r < n; r += per_oc ? 1 : cfg.g) {
    for (int64_t c = 0; c < k; c += per_oc ? cfg.g : 1) {
      const int64_t src = w.scale_set(rows ? r + s.begin : r, rows ? c : c + s.begin);
      const int64_t dst = out->scale_set(r, c);
      std::copy_n(w.alpha.data() + src * q, q, out->alpha.data() + dst * q);
      if (cfg.has_offset) out->offset[static_cast<size_t>(dst)] = w.offset[static_cast<size_t>(src)];
    }
  }
  if (w.codes.bits > 0) slice_codes(w, s, *out);
  if (Status st = format::validate(*out); !st) return Status(st.code(), "tensor '" + name + "' slice: " + st.message());
  return out;
}

lutqfile::Int8Entry slice_int8(const lutqfile::Int8Entry& w, const TensorSlice& s) {
  if (s.axis == SplitAxis::kNone) return w;
  lutqfile::Int8Entry out;
  out.threshold = w.threshold;
  const bool rows = s.axis == SplitAxis::kRows;
  out.n = rows ? s.end - s.begin : w.n;
  out.k = rows ? w.k : s.end - s.begin;
  const int64_t r0 = rows ? s.begin : 0;
  const int64_t c0 = rows ? 0 : s.begin;
  out.scale.assign(w.scale.begin() + r0, w.scale.begin() + r0 + out.n);
  out.q.resize(static_cast<size_t>(out.n * out.k));
  if (!w.fp16.empty()) out.fp16.resize(out.q.size());
  for (int64_t r = 0; r < out.n; ++r) {
    const int64_t from = (r + r0) * w.k + c0;
    std::copy_n(w.q.data() + from, out.k, out.q.data() + r * out.k);
    if (!w.fp16.empty()) std::copy_n(w.fp16.data() + from, out.k, out.fp16.data() + r * out.k);
  }
  return out;
}

Result<ModelFingerprint> fingerprint_file(const std::string& path, const std::string& version) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path file = fs::is_directory(path, ec) ? fs::path(path) / "config.json" : fs::path(path);
  ModelFingerprint f;
  f.file_size = fs::file_size(file, ec);
  if (ec) return Status(StatusCode::kIoError, file.string() + ": " + ec.message());
  std::ifstream in(file, std::ios::binary);
  std::vector<char> head(static_cast<size_t>(std::min<uint64_t>(f.file_size, uint64_t{4} << 20)));
  if (!in.read(head.data(), static_cast<std::streamsize>(head.size()))) {
    return Status(StatusCode::kIoError, file.string() + ": cannot read its header");
  }
  f.header_hash = fnv1a(head.data(), head.size());
  f.version_hash = fnv1a(version.data(), version.size());
  return f;
}

Status check_same_model(const ModelFingerprint& mine, Communicator& comm) {
  if (comm.size() == 1) return Status::ok();
  ModelFingerprint root = mine;
  if (Status s = comm.broadcast(&root, sizeof root, 0); !s) return s;
  std::string why;
  if (mine.version_hash != root.version_hash) why = "a different lutq version";
  if (mine.file_size != root.file_size) {
    why = "a model file of " + std::to_string(mine.file_size) + " bytes (rank 0: " + std::to_string(root.file_size) + ")";
  } else if (mine.header_hash != root.header_hash) {
    why = "a model file whose header and metadata differ from rank 0's";
  }
  std::vector<float> bad(static_cast<size_t>(comm.size()), 0.0f);
  bad[static_cast<size_t>(comm.rank())] = why.empty() ? 0.0f : 1.0f;
  if (Status s = comm.all_reduce_sum(bad.data(), static_cast<int64_t>(bad.size())); !s) return s;
  std::string ranks;
  for (size_t r = 0; r < bad.size(); ++r) {
    if (bad[r] != 0.0f) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  }
  if (ranks.empty()) return Status::ok();
  if (!why.empty()) return Status::invalid("tensor parallelism: this rank has " + why);
  return Status::invalid("tensor parallelism: rank(s) " + ranks + " hold a different model file or lutq version than rank 0");
}

}  // namespace lutq::model
