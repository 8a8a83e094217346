// Constrained decoding by a context-free grammar over bytes (response_format json_schema and tool
// calls; json_schema.h compiles a schema into one). A Grammar is a set of rules, each a list of
// alternatives, each a sequence of byte classes and rule calls. GrammarMatcher runs it as a set
// of parse stacks (all alternatives at once, so ambiguity is fine) and turns it into a lazy DFA:
// a set of stacks is interned once and its transition per byte is computed once, so masking the
// vocabulary is a walk of a trie of the token pieces with one table lookup per trie edge.
//
// Bounds: a stack holds at most kMaxStack frames (deep nesting is a dead end, not an overflow),
// a state at most kMaxStacks stacks, one step expands at most kMaxExpand calls (a left-recursive
// grammar cannot loop); past kMaxSets interned sets the tables are rebuilt from the current state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server/json_constraint.h"

namespace lutq::server {

struct GElem {
  enum Kind : uint8_t { kEnd, kChars, kCall };
  Kind kind = kEnd;
  uint32_t arg = 0;  // kChars: byte class index; kCall: rule
};

class Grammar {
 public:
  using ByteSet = std::array<uint64_t, 4>;
  static constexpr size_t kMaxElems = size_t{1} << 20;

  uint32_t add_rule();  // a rule with no alternatives yet
  void add_alt(uint32_t rule, const std::vector<GElem>& seq);
  GElem bytes(const ByteSet& set);  // interned
  GElem byte(unsigned char b) { return range(b, b); }
  GElem range(unsigned char lo, unsigned char hi);
  static GElem call(uint32_t rule) { return GElem{GElem::kCall, rule}; }
  void literal(std::vector<GElem>& seq, std::string_view text);
  void set_root(uint32_t rule) { root_ = rule; }

  uint32_t root() const { return root_; }
  size_t rule_count() const { return alts_.size(); }
  size_t size() const { return elems_.size(); }
  const std::vector<uint32_t>& alts(uint32_t rule) const { return alts_[rule]; }
  const GElem& elem(uint32_t pos) const { return elems_[pos]; }
  bool has(uint32_t set, unsigned char b) const { return (sets_[set][b >> 6] >> (b & 63)) & 1u; }
  const ByteSet& byte_set(uint32_t set) const { return sets_[set]; }
  // Whether the rule derives at least one finite byte string (a schema like {"$ref": "#"} with
  // itself required does not).
  bool productive(uint32_t rule) const;

 private:
  std::vector<GElem> elems_;                // alternatives, each ended by kEnd
  std::vector<std::vector<uint32_t>> alts_;  // per rule: where its alternatives start
  std::vector<ByteSet> sets_;
  std::unordered_map<std::string, uint32_t> set_ids_;
  uint32_t root_ = 0;
};

// The pieces of a vocabulary as a byte trie, built once per vocabulary.
class TokenTrie {
 public:
  explicit TokenTrie(const TokenTable& table);
  struct Node {
    uint32_t first_child = 0, n_children = 0;
    uint32_t first_token = 0, n_tokens = 0;  // into tokens_: ids whose piece ends here
    unsigned char byte = 0;
  };
  const Node& node(uint32_t i) const { return nodes_[i]; }
  uint32_t token(uint32_t i) const { return tokens_[i]; }
  size_t depth() const { return depth_; }
  size_t vocab() const { return eog_.size(); }
  bool eog(size_t id) const { return eog_[id]; }

 private:
  uint32_t build(const TokenTable& table, std::vector<uint32_t>& ids, size_t lo, size_t hi, size_t d, uint32_t at);
  std::vector<Node> nodes_;
  std::vector<uint32_t> tokens_;
  std::vector<bool> eog_;
  size_t depth_ = 0;
};

class GrammarMatcher {
 public:
  static constexpr uint32_t kMaxStack = 256;
  static constexpr size_t kMaxStacks = 128;
  static constexpr int kMaxExpand = 4096;
  static constexpr size_t kMaxSets = 4096;

  explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);
  // false (the state unchanged) when the bytes cannot continue a sentence of the grammar.
  bool feed(char c);
  bool feed(std::string_view text);
  bool can_end() const;  // the text so far is a whole sentence
  bool done() const;     // ... and nothing may follow
  bool dead() const { return state_ == kDeadSet; }

  // Sets logits[id] = -infinity for each token whose piece cannot continue the text; end of
  // generation only where can_end(). Nothing allowed (a depth limit): end of generation opens.
  void mask(const TokenTrie& trie, std::span<float> logits);

 private:
  static constexpr uint32_t kAccept = 0xFFFFFFFEu;  // the empty stack
  static constexpr uint32_t kNone = 0xFFFFFFFFu;
  static constexpr uint32_t kDeadSet = 0;         // set 0 is the empty set
  static constexpr uint32_t kUnknown = 0xFFFFFFFFu;
  struct Node {
    uint32_t pos, parent, depth;
  };
  uint32_t intern_node(uint32_t pos, uint32_t parent);
  uint32_t intern_set(std::vector<uint32_t>& stacks);
  void settle(uint32_t pos, uint32_t parent, std::vector<uint32_t>& out, int& budget);
  uint32_t step(uint32_t set, unsigned char b);
  void expand(uint32_t set);
  void reset_tables();
  void walk(const TokenTrie& trie, uint32_t node, uint32_t set, std::vector<uint64_t>& allowed);

  std::shared_ptr<const Grammar> g_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, uint32_t> node_ids_;
  std::vector<std::vector<uint32_t>> sets_;  // sorted stack ids
  std::unordered_map<std::string, uint32_t> set_ids_;
  std::string key_;               // intern_set's lookup key, reused
  std::vector<uint32_t> stacks_;  // expand's copy of the set it expands, reused
  std::vector<std::array<uint32_t, 256>> trans_;
  std::unordered_map<uint32_t, std::vector<uint64_t>> masks_;  // per set, for the trie it was made with
  const TokenTrie* mask_trie_ = nullptr;
  uint32_t state_ = kDeadSet;
};

}  // namespace lutq::server
