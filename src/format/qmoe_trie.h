// A ternary trie over the entries of a QMoE dictionary, for the greedy longest-match parse
// the encoder and the dictionary builder share (internal to format/).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "format/qmoe_code.h"

namespace lutq::format {

class QmoeTrie {
 public:
  explicit QmoeTrie(const QmoeDictionary& d) {
    nodes_.push_back(Node{});
    for (int64_t e = 0; e < d.size(); ++e) {
      const auto i = static_cast<size_t>(e);
      int32_t node = 0;
      for (int j = 0; j < d.len[i]; ++j) {
        const int s = symbol_index(static_cast<int>((d.pos[i] >> j) & 1u) - static_cast<int>((d.neg[i] >> j) & 1u));
        int32_t next = nodes_[static_cast<size_t>(node)].child[static_cast<size_t>(s)];
        if (next < 0) {
          next = static_cast<int32_t>(nodes_.size());
          nodes_[static_cast<size_t>(node)].child[static_cast<size_t>(s)] = next;
          nodes_.push_back(Node{});
        }
        node = next;
      }
      nodes_[static_cast<size_t>(node)].code = static_cast<int32_t>(e);
    }
  }

  // Appends the codewords of t[0..k) (symbols in {−1, 0, +1}), longest match first. Needs the
  // three single-symbol entries (validate(QmoeDictionary) guarantees them).
  void parse(const int8_t* t, int64_t k, std::vector<uint16_t>& out) const {
    int64_t c = 0;
    while (c < k) {
      int32_t node = 0;
      int32_t best = -1;
      int best_len = 0;
      for (int j = 0; j < kQmoeMaxRun && c + j < k; ++j) {
        node = nodes_[static_cast<size_t>(node)].child[static_cast<size_t>(symbol_index(t[c + j]))];
        if (node < 0) break;
        if (nodes_[static_cast<size_t>(node)].code >= 0) {
          best = nodes_[static_cast<size_t>(node)].code;
          best_len = j + 1;
        }
      }
      out.push_back(static_cast<uint16_t>(best));
      c += best_len;
    }
  }

 private:
  struct Node {
    std::array<int32_t, 3> child{-1, -1, -1};
    int32_t code = -1;
  };
  static int symbol_index(int s) { return s == 0 ? 0 : (s > 0 ? 1 : 2); }

  std::vector<Node> nodes_;
};

}  // namespace lutq::format
