// QMoE dictionary code: validation, the dictionary builder, greedy encoder and decoder.
//
// Dictionary construction (qmoe_code.h): Tunstall's code for the measured symbol frequencies,
// or rounds of pair merges:
//   start   the three single symbols and the zero runs of length 2..kQmoeMaxRun;
//   rounds  parse every (sampled) row greedily with the current entries (longest match, runs
//           never cross a row end), count each adjacent pair of codewords whose lengths sum to at
//           most kQmoeMaxRun, and add the most frequent pairs (count >= 2, ties by codeword
//           order) as new entries, a share of the remaining capacity per round;
// then, for both, prune: parse once more, drop the entries the parse never used (singles stay
// so any stream stays codable) and order the rest by use, so the hot part of the table is small.
// Deterministic for the same input.
#include "format/qmoe_code.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/fp16.h"
#include "format/qmoe_trie.h"

namespace lutq::format {
namespace {

bool fp16_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

std::string rc(int64_t r, int64_t c) {
  return "row " + std::to_string(r) + ", column " + std::to_string(c);
}

// An entry as a set key: the masks and the length (trailing zeros make lengths matter).
struct EntryKey {
  uint64_t masks = 0;
  int len = 0;
  bool operator==(const EntryKey&) const = default;
};
struct EntryKeyHash {
  size_t operator()(const EntryKey& e) const { return std::hash<uint64_t>()(e.masks * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(e.len)); }
};
using EntrySet = std::unordered_set<EntryKey, EntryKeyHash>;

EntryKey entry_key(int len, uint32_t pos, uint32_t neg) { return {static_cast<uint64_t>(neg) << 32 | pos, len}; }

// Dictionary under construction: entries plus a dedup index.
struct Builder {
  QmoeDictionary d;
  EntrySet keys;

  bool add(int len, uint32_t pos, uint32_t neg) {
    if (!keys.insert(entry_key(len, pos, neg)).second) return false;
    d.len.push_back(static_cast<uint8_t>(len));
    d.pos.push_back(pos);
    d.neg.push_back(neg);
    return true;
  }
};

Builder initial_builder() {
  Builder b;
  b.add(1, 0, 0);
  b.add(1, 1, 0);
  b.add(1, 0, 1);
  for (int len = 2; len <= kQmoeMaxRun; ++len) b.add(len, 0, 0);
  return b;
}

// Greedy parse of every row_stride-th row of every matrix; fn(codes of one row).
template <typename Fn>
void parse_rows(const QmoeTrie& trie, std::span<const TernaryMatrix* const> mats, int64_t stride, Fn&& fn) {
  std::vector<uint16_t> codes;
  for (const TernaryMatrix* m : mats) {
    for (int64_t r = 0; r < m->n; r += stride) {
      codes.clear();
      trie.parse(m->t.data() + r * m->k, m->k, codes);
      fn(codes);
    }
  }
}

void merge_round(Builder& b, std::span<const TernaryMatrix* const> mats, const DictionaryOptions& opt, int64_t budget) {
  const QmoeTrie trie(b.d);
  std::unordered_map<uint64_t, uint32_t> counts;
  parse_rows(trie, mats, opt.row_stride, [&](const std::vector<uint16_t>& codes) {
    for (size_t i = 1; i < codes.size(); ++i) {
      if (b.d.len[codes[i - 1]] + b.d.len[codes[i]] > kQmoeMaxRun) continue;
      ++counts[static_cast<uint64_t>(codes[i - 1]) << 32 | codes[i]];
    }
  });
  std::vector<std::pair<uint32_t, uint64_t>> cand;
  for (const auto& [key, count] : counts) {
    if (count >= 2) cand.emplace_back(count, key);
  }
  std::sort(cand.begin(), cand.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  int64_t added = 0;
  for (const auto& [count, key] : cand) {
    if (added >= budget) break;
    const auto a = static_cast<size_t>(key >> 32);
    const auto c = static_cast<size_t>(key & 0xffffffffu);
    const int la = b.d.len[a];
    if (b.add(la + b.d.len[c], b.d.pos[a] | b.d.pos[c] << la, b.d.neg[a] | b.d.neg[c] << la)) ++added;
  }
}

// Tunstall: grow the complete ternary prefix tree by expanding its most probable leaf.
void tunstall(Builder& b, std::span<const TernaryMatrix* const> mats, int64_t max_entries) {
  double count[3] = {1.0, 1.0, 1.0};  // 0, +1, −1 (one pseudo-count each)
  for (const TernaryMatrix* m : mats) {
    for (int8_t t : m->t) count[t == 0 ? 0 : (t > 0 ? 1 : 2)] += 1.0;
  }
  const double total = count[0] + count[1] + count[2];
  const double p[3] = {count[0] / total, count[1] / total, count[2] / total};
  struct Leaf {
    double prob;
    int len;
    uint32_t pos, neg;
    bool operator<(const Leaf& o) const { return prob < o.prob; }
  };
  std::priority_queue<Leaf> open;  // expandable leaves (len < 32)
  std::vector<Leaf> done;  // leaves of length 32
  for (int s = 0; s < 3; ++s) open.push(Leaf{p[s], 1, s == 1 ? 1u : 0u, s == 2 ? 1u : 0u});
  // Room for the leaves plus the row-end entries b already holds (singles, zero runs).
  int64_t leaves = 3;
  while (!open.empty() && leaves + 2 + b.d.size() <= max_entries) {
    const Leaf l = open.top();
    open.pop();
    for (int s = 0; s < 3; ++s) {
      const Leaf c{l.prob * p[s], l.len + 1, l.pos | (s == 1 ? 1u << l.len : 0u), l.neg | (s == 2 ? 1u << l.len : 0u)};
      (c.len < kQmoeMaxRun ? open.push(c) : done.push_back(c));
    }
    leaves += 2;
  }
  for (; !open.empty(); open.pop()) done.push_back(open.top());
  for (const Leaf& l : done) b.add(l.len, l.pos, l.neg);
}

QmoeDictionary prune(const QmoeDictionary& d, std::span<const TernaryMatrix* const> mats, int64_t stride) {
  const QmoeTrie trie(d);
  std::vector<uint64_t> uses(static_cast<size_t>(d.size()), 0);
  parse_rows(trie, mats, stride, [&](const std::vector<uint16_t>& codes) {
    for (uint16_t c : codes) ++uses[c];
  });
  std::vector<size_t> order(uses.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return uses[x] > uses[y]; });
  QmoeDictionary out;
  for (size_t e : order) {
    if (uses[e] == 0 && d.len[e] != 1) continue;
    out.len.push_back(d.len[e]);
    out.pos.push_back(d.pos[e]);
    out.neg.push_back(d.neg[e]);
  }
  return out;
}

Status check_offsets(const QmoeMatrix& w) {
  if (static_cast<int64_t>(w.row_offset.size()) != w.n + 1) {
    return {StatusCode::kCorrupt, "row offsets: " + std::to_string(w.row_offset.size()) + " values, expected " +
                                      std::to_string(w.n + 1)};
  }
  if (w.row_offset[0] != 0) return {StatusCode::kCorrupt, "row offsets: the first is not 0"};
  for (int64_t r = 0; r < w.n; ++r) {
    if (w.row_offset[static_cast<size_t>(r + 1)] < w.row_offset[static_cast<size_t>(r)]) {
      return {StatusCode::kCorrupt, "row offsets: offset of row " + std::to_string(r + 1) + " decreases"};
    }
  }
  if (w.row_offset.back() != w.codes.size()) {
    return {StatusCode::kCorrupt, "row offsets: last offset " + std::to_string(w.row_offset.back()) + " != " +
                                      std::to_string(w.codes.size()) + " codewords"};
  }
  return Status::ok();
}

// Little-endian values of a byte buffer; false when the size is not a whole number of them.
template <typename T>
bool read_values(std::span<const uint8_t> b, std::vector<T>& out) {
  if (b.size() % sizeof(T) != 0) return false;
  out.resize(b.size() / sizeof(T));
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t v = 0;
    for (size_t j = 0; j < sizeof(T); ++j) v |= static_cast<uint64_t>(b[i * sizeof(T) + j]) << (8 * j);
    out[i] = static_cast<T>(v);
  }
  return true;
}

}  // namespace

Result<QmoeDictionary> dictionary_from_bytes(std::span<const uint8_t> len, std::span<const uint8_t> pos,
                                             std::span<const uint8_t> neg) {
  QmoeDictionary d;
  if (!read_values(len, d.len) || !read_values(pos, d.pos) || !read_values(neg, d.neg)) {
    return Status(StatusCode::kCorrupt, "qmoe dictionary: a mask buffer is not a whole number of uint32");
  }
  if (Status s = validate(d); !s) return s;
  return d;
}

Result<QmoeMatrix> matrix_from_bytes(int64_t n, int64_t k, std::span<const uint8_t> scale,
                                     std::span<const uint8_t> row_offset, std::span<const uint8_t> codes,
                                     std::shared_ptr<const QmoeDictionary> dict) {
  QmoeMatrix m;
  m.n = n;
  m.k = k;
  m.dict = std::move(dict);
  if (!read_values(scale, m.scale) || !read_values(row_offset, m.row_offset) || !read_values(codes, m.codes)) {
    return Status(StatusCode::kCorrupt, "qmoe matrix: a buffer is not a whole number of its values");
  }
  if (Status s = validate(m); !s) return s;
  return m;
}

double TernaryMatrix::zero_fraction() const {
  if (t.empty()) return 0.0;
  const auto zeros = std::count(t.begin(), t.end(), int8_t{0});
  return static_cast<double>(zeros) / static_cast<double>(t.size());
}

Status validate(const TernaryMatrix& w) {
  if (w.n < 1 || w.k < 1) return Status::invalid("ternary matrix: bad shape " + std::to_string(w.n) + "x" + std::to_string(w.k));
  if (static_cast<int64_t>(w.t.size()) != w.n * w.k || static_cast<int64_t>(w.scale.size()) != w.n) {
    return Status::invalid("ternary matrix: buffer sizes do not match the shape");
  }
  for (int64_t i = 0; i < w.n * w.k; ++i) {
    const int8_t s = w.t[static_cast<size_t>(i)];
    if (s < -1 || s > 1) return Status::invalid("ternary matrix: symbol " + std::to_string(s) + " at " + rc(i / w.k, i % w.k));
  }
  for (int64_t r = 0; r < w.n; ++r) {
    if (!fp16_finite(w.scale[static_cast<size_t>(r)])) return Status::invalid("ternary matrix: scale of row " + std::to_string(r) + " is not finite");
  }
  return Status::ok();
}

Status validate(const QmoeDictionary& d) {
  const int64_t size = d.size();
  if (size < 3 || size > kQmoeMaxEntries) {
    return {StatusCode::kCorrupt, "qmoe dictionary: " + std::to_string(size) + " entries (3.." +
                                      std::to_string(kQmoeMaxEntries) + " allowed)"};
  }
  if (static_cast<int64_t>(d.pos.size()) != size || static_cast<int64_t>(d.neg.size()) != size) {
    return {StatusCode::kCorrupt, "qmoe dictionary: mask arrays differ in size from the length array"};
  }
  EntrySet seen;
  int singles = 0;
  for (int64_t e = 0; e < size; ++e) {
    const auto i = static_cast<size_t>(e);
    const int len = d.len[i];
    // Shifted only once len is known to be in 1..32.
    const uint64_t valid = len >= 1 && len <= kQmoeMaxRun ? (uint64_t{1} << len) - 1u : 0u;
    std::string bad;
    if (len < 1 || len > kQmoeMaxRun) {
      bad = "length " + std::to_string(len);
    } else if ((d.pos[i] & d.neg[i]) != 0) {
      bad = "a symbol both +1 and -1";
    } else if (((d.pos[i] | d.neg[i]) & ~valid) != 0) {
      bad = "symbols past its length";
    } else if (!seen.insert(entry_key(len, d.pos[i], d.neg[i])).second) {
      bad = "a duplicate";
    }
    if (!bad.empty()) return {StatusCode::kCorrupt, "qmoe dictionary: entry " + std::to_string(e) + " has " + bad};
    if (len == 1) ++singles;
  }
  if (singles != 3) return {StatusCode::kCorrupt, "qmoe dictionary: the three single-symbol entries are not all present"};
  return Status::ok();
}

Status validate(const QmoeMatrix& w) {
  if (w.dict == nullptr) return {StatusCode::kCorrupt, "qmoe matrix: no dictionary"};
  if (Status s = validate(*w.dict); !s) return s;
  if (w.n < 1 || w.k < 1 || w.n > (int64_t{1} << 31) || w.k > (int64_t{1} << 31)) {
    return {StatusCode::kCorrupt, "qmoe matrix: bad shape " + std::to_string(w.n) + "x" + std::to_string(w.k)};
  }
  if (static_cast<int64_t>(w.scale.size()) != w.n) return {StatusCode::kCorrupt, "qmoe matrix: scale count != rows"};
  for (int64_t r = 0; r < w.n; ++r) {
    if (!fp16_finite(w.scale[static_cast<size_t>(r)])) {
      return {StatusCode::kCorrupt, "qmoe matrix: scale of row " + std::to_string(r) + " is not finite"};
    }
  }
  if (Status s = check_offsets(w); !s) return s;
  const int64_t entries = w.dict->size();
  for (int64_t r = 0; r < w.n; ++r) {
    int64_t symbols = 0;
    for (uint32_t i = w.row_offset[static_cast<size_t>(r)]; i < w.row_offset[static_cast<size_t>(r + 1)]; ++i) {
      const uint16_t code = w.codes[i];
      if (code >= entries) {
        return {StatusCode::kCorrupt, "qmoe matrix: codeword " + std::to_string(i) + " (" + std::to_string(code) +
                                          ") outside the dictionary of " + std::to_string(entries)};
      }
      symbols += w.dict->len[code];
    }
    if (symbols != w.k) {
      return {StatusCode::kCorrupt, "qmoe matrix: row " + std::to_string(r) + " decodes to " + std::to_string(symbols) +
                                        " symbols, expected " + std::to_string(w.k)};
    }
  }
  return Status::ok();
}

std::vector<float> dequantize(const TernaryMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.n * w.k));
  for (int64_t r = 0; r < w.n; ++r) {
    const float s = fp16_to_fp32(w.scale[static_cast<size_t>(r)]);
    for (int64_t c = 0; c < w.k; ++c) out[static_cast<size_t>(r * w.k + c)] = s * w.t[static_cast<size_t>(r * w.k + c)];
  }
  return out;
}

double QmoeMatrix::code_bits_per_weight() const {
  return 16.0 * static_cast<double>(codes.size()) / static_cast<double>(n * k);
}

double QmoeMatrix::bits_per_weight() const {
  const double extra = 16.0 * static_cast<double>(n) + 32.0 * static_cast<double>(n + 1);
  return code_bits_per_weight() + extra / static_cast<double>(n * k);
}

Result<QmoeDictionary> build_dictionary(std::span<const TernaryMatrix* const> mats, const DictionaryOptions& opt) {
  if (opt.max_entries < 3 + kQmoeMaxRun - 1 || opt.max_entries > kQmoeMaxEntries) {
    return Status::invalid("qmoe dictionary: max_entries must be in " + std::to_string(3 + kQmoeMaxRun - 1) + ".." +
                           std::to_string(kQmoeMaxEntries));
  }
  if (opt.rounds < 0 || opt.row_stride < 1) return Status::invalid("qmoe dictionary: rounds >= 0 and row_stride >= 1");
  for (const TernaryMatrix* m : mats) {
    if (m == nullptr) return Status::invalid("qmoe dictionary: null matrix");
    if (Status s = validate(*m); !s) return s;
  }
  Builder b = initial_builder();
  if (opt.method == DictionaryMethod::kTunstall) {
    tunstall(b, mats, opt.max_entries);
    return prune(b.d, mats, opt.row_stride);
  }
  for (int round = 0; round < opt.rounds; ++round) {
    const int64_t room = opt.max_entries - b.d.size();
    if (room <= 0) break;
    merge_round(b, mats, opt, round + 1 == opt.rounds ? room : std::max<int64_t>(1, room / (opt.rounds - round)));
  }
  return prune(b.d, mats, opt.row_stride);
}

Result<QmoeMatrix> encode(const TernaryMatrix& w, std::shared_ptr<const QmoeDictionary> dict) {
  if (dict == nullptr) return Status::invalid("qmoe encode: no dictionary");
  if (Status s = validate(*dict); !s) return s;
  if (Status s = validate(w); !s) return s;
  const QmoeTrie trie(*dict);
  QmoeMatrix out;
  out.n = w.n;
  out.k = w.k;
  out.scale = w.scale;
  out.row_offset.reserve(static_cast<size_t>(w.n + 1));
  out.row_offset.push_back(0);
  for (int64_t r = 0; r < w.n; ++r) {
    trie.parse(w.t.data() + r * w.k, w.k, out.codes);
    if (out.codes.size() > 0xffffffffu) return Status::invalid("qmoe encode: more than 2^32 codewords in one matrix");
    out.row_offset.push_back(static_cast<uint32_t>(out.codes.size()));
  }
  out.dict = std::move(dict);
  return out;
}

Result<TernaryMatrix> decode(const QmoeMatrix& w) {
  if (Status s = validate(w); !s) return s;
  TernaryMatrix out{w.n, w.k, std::vector<int8_t>(static_cast<size_t>(w.n * w.k), 0), w.scale};
  const QmoeDictionary& d = *w.dict;
  for (int64_t r = 0; r < w.n; ++r) {
    int8_t* row = out.t.data() + r * w.k;
    int64_t c = 0;
    for (uint32_t i = w.row_offset[static_cast<size_t>(r)]; i < w.row_offset[static_cast<size_t>(r + 1)]; ++i) {
      const uint16_t e = w.codes[i];
      for (int j = 0; j < d.len[e]; ++j) row[c + j] = static_cast<int8_t>(((d.pos[e] >> j) & 1u) - ((d.neg[e] >> j) & 1u));
      c += d.len[e];
    }
  }
  return out;
}

std::string describe(const QmoeMatrix& w) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%lldx%lld qmoe ternary (%.3f bpw, dictionary %lld entries)",
                static_cast<long long>(w.n), static_cast<long long>(w.k), w.bits_per_weight(),
                static_cast<long long>(w.dict ? w.dict->size() : 0));
  return buf;
}

}  // namespace lutq::format
