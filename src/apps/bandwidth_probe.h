// The machine's DRAM read bandwidth, probed in the same run as the kernel timings so a kernel's
// share of the memory floor compares like with like.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"

namespace lutq::apps {

struct BandwidthResult {
  int threads = 1;
  double median_gbps = 0.0;  // 1e9 bytes/s
  double min_gbps = 0.0;
  double max_gbps = 0.0;
  uint64_t checksum = 0;  // the sum of what was read: keeps the loads observable
};

// Owns the array it reads: allocated and written once (every page distinct, so the host cannot
// merge pages), then measured at any number of thread counts.
class BandwidthProbe {
 public:
  BandwidthProbe(size_t bytes, bool use_avx2);

  // Times `passes` full reads of the array after one warm-up pass, split over the pool's threads;
  // each thread sums AVX2 loads into 8 accumulators, reading 64 KiB blocks as 4 side-by-side
  // streams of 16 KiB (64-bit scalar loads, one stream, without AVX2).
  // Median, min and max over the passes.
  BandwidthResult measure(ThreadPool& pool, int passes);

 private:
  AlignedBuffer buf_;
  bool use_avx2_;
};

}  // namespace lutq::apps
