// Grammar, TokenTrie and GrammarMatcher (grammar.h).
#include "server/grammar.h"

#include <algorithm>
#include <cstring>

namespace lutq::server {

// ---- Grammar ----

uint32_t Grammar::add_rule() {
  alts_.emplace_back();
  return static_cast<uint32_t>(alts_.size() - 1);
}

void Grammar::add_alt(uint32_t rule, const std::vector<GElem>& seq) {
  alts_[rule].push_back(static_cast<uint32_t>(elems_.size()));
  elems_.insert(elems_.end(), seq.begin(), seq.end());
  elems_.push_back(GElem{});
}

GElem Grammar::bytes(const ByteSet& set) {
  std::string key(sizeof(ByteSet), '\0');
  std::memcpy(key.data(), set.data(), sizeof(ByteSet));
  const auto [it, added] = set_ids_.emplace(std::move(key), static_cast<uint32_t>(sets_.size()));
  if (added) sets_.push_back(set);
  return GElem{GElem::kChars, it->second};
}

GElem Grammar::range(unsigned char lo, unsigned char hi) {
  ByteSet set{};
  for (unsigned b = lo; b <= hi; ++b) set[b >> 6] |= uint64_t{1} << (b & 63);
  return bytes(set);
}

void Grammar::literal(std::vector<GElem>& seq, std::string_view text) {
  for (const char c : text) seq.push_back(byte(static_cast<unsigned char>(c)));
}

bool Grammar::productive(uint32_t rule) const {
  std::vector<bool> prod(alts_.size(), false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < alts_.size(); ++r) {
      if (prod[r]) continue;
      for (const uint32_t start : alts_[r]) {
        bool ok = true;
        for (uint32_t p = start; ok && elems_[p].kind != GElem::kEnd; ++p) {
          ok = elems_[p].kind != GElem::kCall || prod[elems_[p].arg];
        }
        if (ok) {
          prod[r] = true;
          changed = true;
          break;
        }
      }
    }
  }
  return prod[rule];
}

// ---- TokenTrie ----

TokenTrie::TokenTrie(const TokenTable& table) : eog_(table.end_of_generation) {
  eog_.resize(table.pieces.size(), false);
  std::vector<uint32_t> ids;
  for (size_t id = 0; id < table.pieces.size(); ++id) {
    if (!eog_[id] && !table.pieces[id].empty()) ids.push_back(static_cast<uint32_t>(id));
  }
  std::sort(ids.begin(), ids.end(), [&](uint32_t a, uint32_t b) { return table.pieces[a] < table.pieces[b]; });
  nodes_.emplace_back();
  build(table, ids, 0, ids.size(), 0, 0);
}

// Node `at` holds the ids [lo, hi) (sorted), whose pieces share their first d bytes.
uint32_t TokenTrie::build(const TokenTable& table, std::vector<uint32_t>& ids, size_t lo, size_t hi, size_t d,
                          uint32_t at) {
  depth_ = std::max(depth_, d);
  const auto piece = [&](size_t i) -> const std::string& { return table.pieces[ids[i]]; };
  nodes_[at].first_token = static_cast<uint32_t>(tokens_.size());
  while (lo < hi && piece(lo).size() == d) tokens_.push_back(ids[lo++]);
  nodes_[at].n_tokens = static_cast<uint32_t>(tokens_.size()) - nodes_[at].first_token;
  std::vector<size_t> starts;  // where each child's group begins
  for (size_t i = lo; i < hi; ++i) {
    if (i == lo || piece(i)[d] != piece(i - 1)[d]) starts.push_back(i);
  }
  const auto first = static_cast<uint32_t>(nodes_.size());
  nodes_[at].first_child = first;
  nodes_[at].n_children = static_cast<uint32_t>(starts.size());
  nodes_.resize(nodes_.size() + starts.size());
  for (size_t k = 0; k < starts.size(); ++k) {
    const size_t end = k + 1 < starts.size() ? starts[k + 1] : hi;
    nodes_[first + k].byte = static_cast<unsigned char>(piece(starts[k])[d]);
    build(table, ids, starts[k], end, d + 1, static_cast<uint32_t>(first + k));
  }
  return at;
}

// ---- GrammarMatcher ----

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar) : g_(std::move(grammar)) {
  reset_tables();
  std::vector<uint32_t> start;
  int budget = kMaxExpand;
  for (const uint32_t a : g_->alts(g_->root())) settle(a, kNone, start, budget);
  state_ = intern_set(start);
}

uint32_t GrammarMatcher::intern_node(uint32_t pos, uint32_t parent) {
  const uint32_t depth = parent == kNone ? 1 : nodes_[parent].depth + 1;
  if (depth > kMaxStack) return kNone;
  const uint64_t key = (uint64_t{pos} << 32) | parent;
  const auto [it, added] = node_ids_.emplace(key, static_cast<uint32_t>(nodes_.size()));
  if (added) nodes_.push_back(Node{pos, parent, depth});
  return it->second;
}

uint32_t GrammarMatcher::intern_set(std::vector<uint32_t>& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  if (stacks.size() > kMaxStacks) stacks.resize(kMaxStacks);  // fewer ways, never a wrong one
  if (stacks.empty()) return kDeadSet;
  key_.assign(reinterpret_cast<const char*>(stacks.data()), stacks.size() * sizeof(uint32_t));
  if (const auto it = set_ids_.find(key_); it != set_ids_.end()) return it->second;
  const auto id = static_cast<uint32_t>(sets_.size());
  set_ids_.emplace(key_, id);
  sets_.push_back(stacks);
  trans_.emplace_back();
  trans_.back().fill(kUnknown);
  return id;
}

// Collects the stacks that continue at elements[pos] with `parent` below: a byte class on top,
// or the empty stack (kAccept). Calls push their return position (none for a call that ends its
// alternative: a tail call, so right recursion does not grow the stack).
void GrammarMatcher::settle(uint32_t pos, uint32_t parent, std::vector<uint32_t>& out, int& budget) {
  if (--budget < 0) return;
  const GElem e = g_->elem(pos);
  switch (e.kind) {
    case GElem::kEnd: {
      if (parent == kNone) {
        out.push_back(kAccept);
        return;
      }
      const Node n = nodes_[parent];
      settle(n.pos, n.parent, out, budget);
      return;
    }
    case GElem::kChars: {
      const uint32_t id = intern_node(pos, parent);
      if (id != kNone) out.push_back(id);
      return;
    }
    case GElem::kCall: {
      uint32_t ret = parent;
      if (g_->elem(pos + 1).kind != GElem::kEnd) {
        ret = intern_node(pos + 1, parent);
        if (ret == kNone) return;
      }
      for (const uint32_t a : g_->alts(e.arg)) settle(a, ret, out, budget);
      return;
    }
  }
}

uint32_t GrammarMatcher::step(uint32_t set, unsigned char b) {
  if (trans_[set][b] == kUnknown) expand(set);
  return trans_[set][b];
}

// Fills the transitions of `set` on every byte at once. A byte's next set depends only on which
// of the set's stacks accept it (its signature), so bytes of one signature share one settle:
// a string state, say, settles once for the ~90 bytes that continue it, not once per byte.
void GrammarMatcher::expand(uint32_t set) {
  using Signature = std::array<uint64_t, (kMaxStacks + 63) / 64>;
  stacks_ = sets_[set];  // a copy: interning below may grow sets_
  std::array<Signature, 256> sig{};
  for (size_t i = 0; i < stacks_.size(); ++i) {
    if (stacks_[i] == kAccept) continue;
    const Grammar::ByteSet& bytes = g_->byte_set(g_->elem(nodes_[stacks_[i]].pos).arg);
    for (unsigned b = 0; b < 256; ++b) {
      if ((bytes[b >> 6] >> (b & 63)) & 1u) sig[b][i >> 6] |= uint64_t{1} << (i & 63);
    }
  }
  std::vector<uint32_t> out;
  std::vector<unsigned> firsts;  // the first byte of each signature met so far
  for (unsigned b = 0; b < 256; ++b) {
    if (sig[b] == Signature{}) {
      trans_[set][b] = kDeadSet;
      continue;
    }
    const auto same = std::find_if(firsts.begin(), firsts.end(), [&](unsigned f) { return sig[f] == sig[b]; });
    if (same != firsts.end()) {
      trans_[set][b] = trans_[set][*same];
      continue;
    }
    firsts.push_back(b);
    out.clear();
    int budget = kMaxExpand;
    for (size_t i = 0; i < stacks_.size(); ++i) {
      if ((sig[b][i >> 6] >> (i & 63)) & 1u) {
        const Node n = nodes_[stacks_[i]];
        settle(n.pos + 1, n.parent, out, budget);
      }
    }
    trans_[set][b] = intern_set(out);
  }
}

// Forgets every table and interns the current state again (bounds the memory of a long
// generation through many distinct states).
void GrammarMatcher::reset_tables() {
  std::vector<std::vector<uint32_t>> stacks;  // positions, bottom first
  if (!sets_.empty()) {
    for (const uint32_t s : sets_[state_]) {
      std::vector<uint32_t>& st = stacks.emplace_back();
      for (uint32_t n = s; n != kAccept && n != kNone; n = nodes_[n].parent) st.push_back(nodes_[n].pos);
      std::reverse(st.begin(), st.end());
    }
  }
  nodes_.clear();
  node_ids_.clear();
  sets_.assign(1, {});
  set_ids_.clear();
  trans_.assign(1, {});
  trans_[0].fill(kDeadSet);
  masks_.clear();
  std::vector<uint32_t> ids;
  for (const std::vector<uint32_t>& st : stacks) {
    uint32_t parent = kNone;
    for (const uint32_t pos : st) parent = intern_node(pos, parent);
    ids.push_back(st.empty() ? kAccept : parent);
  }
  state_ = intern_set(ids);
}

bool GrammarMatcher::feed(char c) {
  if (sets_.size() > kMaxSets) reset_tables();
  const uint32_t next = step(state_, static_cast<unsigned char>(c));
  if (next == kDeadSet) return false;
  state_ = next;
  return true;
}

bool GrammarMatcher::feed(std::string_view text) {
  if (sets_.size() > kMaxSets) reset_tables();
  uint32_t s = state_;
  for (const char c : text) {
    s = step(s, static_cast<unsigned char>(c));
    if (s == kDeadSet) return false;
  }
  state_ = s;
  return true;
}

bool GrammarMatcher::can_end() const {
  const std::vector<uint32_t>& s = sets_[state_];
  return std::find(s.begin(), s.end(), kAccept) != s.end();
}

bool GrammarMatcher::done() const {
  const std::vector<uint32_t>& s = sets_[state_];
  return s.size() == 1 && s[0] == kAccept;
}

void GrammarMatcher::walk(const TokenTrie& trie, uint32_t node, uint32_t set, std::vector<uint64_t>& allowed) {
  const TokenTrie::Node& nd = trie.node(node);
  for (uint32_t c = nd.first_child; c < nd.first_child + nd.n_children; ++c) {
    const TokenTrie::Node& child = trie.node(c);
    const uint32_t next = step(set, child.byte);
    if (next == kDeadSet) continue;
    for (uint32_t t = child.first_token; t < child.first_token + child.n_tokens; ++t) {
      const uint32_t id = trie.token(t);
      allowed[id >> 6] |= uint64_t{1} << (id & 63);
    }
    walk(trie, c, next, allowed);
  }
}

void GrammarMatcher::mask(const TokenTrie& trie, std::span<float> logits) {
  if (sets_.size() > kMaxSets) reset_tables();
  if (&trie != mask_trie_) {
    masks_.clear();
    mask_trie_ = &trie;
  }
  auto it = masks_.find(state_);
  if (it == masks_.end()) {
    std::vector<uint64_t> allowed((trie.vocab() + 63) / 64, 0);
    walk(trie, 0, state_, allowed);
    if (can_end()) {
      for (size_t id = 0; id < trie.vocab(); ++id) {
        if (trie.eog(id)) allowed[id >> 6] |= uint64_t{1} << (id & 63);
      }
    }
    if (masks_.size() >= 256) masks_.clear();
    it = masks_.emplace(state_, std::move(allowed)).first;
  }
  const std::vector<uint64_t>& allowed = it->second;
  apply_token_mask(
      logits, trie.vocab(), [&](size_t id) { return ((allowed[id >> 6] >> (id & 63)) & 1u) != 0; },
      [&](size_t id) { return trie.eog(id); });
}

}  // namespace lutq::server
