// Plain C++ helpers of the AVX2 and AVX-512 gemm drivers: uninitialised scratch, carving it up,
// the table build on or off the pool, and work queues for the pool threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <span>
#include <utility>
#include <vector>

#include "core/thread_pool.h"

namespace lutq::kernels::avx2 {

constexpr size_t round64(size_t b) { return (b + 63) / 64 * 64; }

// Activations (k·m) up to which a per-OC gemm builds its tables on the calling thread: a build
// this small (a few microseconds) costs less than handing it to the pool and waiting for it.
constexpr int64_t kInlineBuild = 4096;

// Runs build(e0, e1, s0, s1) over `items` table items and `sums` group sums of a build from
// `activations` activations: on the calling thread when small (kInlineBuild), else split over
// the pool's threads.
template <typename Build>
void build_tables(int64_t activations, int64_t items, int64_t sums, ThreadPool& pool, Build&& build) {
  if (activations <= kInlineBuild) {
    build(0, items, 0, sums);
    return;
  }
  pool.run([&](int th, int nth) {
    const auto [e0, e1] = split_range(items, 1, th, nth);
    const auto [s0, s1] = split_range(sums, 1, th, nth);
    build(e0, e1, s0, s1);
  });
}

// Uninitialised 64-byte aligned scratch: tables are rewritten every call, no need to zero them.
class Scratch {
 public:
  explicit Scratch(size_t bytes) {
    if (bytes == 0) return;
    p_ = static_cast<uint8_t*>(std::aligned_alloc(64, round64(bytes)));
    if (p_ == nullptr) throw std::bad_alloc();
  }
  ~Scratch() { std::free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  uint8_t* data() const { return p_; }

 private:
  uint8_t* p_ = nullptr;
};

// Carves consecutive 64-byte aligned pieces out of one allocation.
class Carver {
 public:
  explicit Carver(uint8_t* base) : p_(base) {}
  template <typename T>
  T* take(size_t count) {
    T* out = reinterpret_cast<T*>(p_ == nullptr ? nullptr : p_ + used_);
    used_ += round64(count * sizeof(T));
    return out;
  }
  size_t used() const { return used_; }

 private:
  uint8_t* p_;
  size_t used_ = 0;
};

// Hands out [begin, end) in chunks to whichever thread asks first: on a shared machine a thread
// the OS preempts then delays a call by at most one chunk, not by its whole static share.
class WorkQueue {
 public:
  WorkQueue(int64_t begin, int64_t end, int threads)
      : next_(begin), end_(end), chunk_(std::max<int64_t>(1, (end - begin) / (8 * int64_t{threads}))) {}
  bool take(int64_t& b, int64_t& e) {
    b = next_.fetch_add(chunk_, std::memory_order_relaxed);
    if (b >= end_) return false;
    e = std::min(end_, b + chunk_);
    return true;
  }

 private:
  std::atomic<int64_t> next_;
  int64_t end_;
  int64_t chunk_;
};


// The tiles of several matrices (parts with a Layout L and its L.tiles) in one index space:
// global tile g -> (part, tile within it). A thread takes increasing indices from a WorkQueue,
// so its cursor only moves forward.
template <typename Part>
class PartTiles {
 public:
  struct Cursor {
    size_t part = 0;
  };
  explicit PartTiles(std::span<const Part> parts) : parts_(parts) {
    first_.reserve(parts.size() + 1);
    first_.push_back(0);
    for (const Part& p : parts) first_.push_back(first_.back() + p.L.tiles);
  }
  int64_t total() const { return first_.back(); }
  std::pair<const Part&, int64_t> locate(int64_t g, Cursor& at) const {
    if (g < first_[at.part]) at.part = 0;
    while (g >= first_[at.part + 1]) ++at.part;
    return {parts_[at.part], g - first_[at.part]};
  }

 private:
  std::span<const Part> parts_;
  std::vector<int64_t> first_;
};

}  // namespace lutq::kernels::avx2
