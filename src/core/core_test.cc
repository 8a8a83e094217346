#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "core/cpu.h"
#include "core/fp16.h"
#include "core/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lutq {
namespace {

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("f16c")
uint16_t hw_to_fp16(float f) { return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }
float hw_to_fp32(uint16_t h) { return _cvtsh_ss(h); }
#pragma GCC pop_options
#endif

TEST(Fp16, WideningMatchesHardwareForAllHalves) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "no F16C on this CPU to compare with";
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = hw_to_fp32(static_cast<uint16_t>(h));
    const float got = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << "half 0x" << std::hex << h;
    }
  }
}

TEST(Fp16, NarrowingMatchesHardware) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "no F16C on this CPU to compare with";
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = std::bit_cast<float>(bits(rng));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), hw_to_fp16(f)) << "float " << f << " bits 0x" << std::hex << std::bit_cast<uint32_t>(f);
  }
  // Every exact half and every midpoint between neighbours (ties to even).
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float a = fp16_to_fp32(static_cast<uint16_t>(h));
    ASSERT_EQ(fp32_to_fp16(a), h);
    const float mid = (a + fp16_to_fp32(static_cast<uint16_t>(h + 1))) / 2;
    ASSERT_EQ(fp32_to_fp16(mid), hw_to_fp16(mid)) << "midpoint above half 0x" << std::hex << h;
    ASSERT_EQ(fp32_to_fp16(-mid), hw_to_fp16(-mid));
  }
}

TEST(ThreadPool, RunsEveryThreadOnceAndReuses) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.size(), threads);
    for (int rep = 0; rep < 2000; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(threads));
      pool.run([&](int index, int count) {
        ASSERT_EQ(count, threads);
        hits[static_cast<size_t>(index)].fetch_add(1);
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeInAlignedPieces) {
  ThreadPool pool(2);
  for (int64_t count : {0, 1, 5, 64, 100, 1000}) {
    for (int64_t align : {1, 8, 32}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(count));
      pool.parallel_for(count, align, [&](int64_t b, int64_t e) {
        EXPECT_EQ(b % align, 0);
        for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
      });
      for (auto& s : seen) ASSERT_EQ(s.load(), 1);
    }
  }
}

TEST(ThreadPool, WakesAfterWorkersSleep) {
  ThreadPool pool(2);
  std::atomic<int> total{0};
  for (int rep = 0; rep < 3; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // long enough for workers to sleep
    pool.run([&](int, int) { total.fetch_add(1); });
  }
  EXPECT_EQ(total.load(), 6);
}

// Two threads sharing one pool (a server's scheduler beside a reference session) take turns;
// before run() serialized its callers this lost a job and spun forever.
TEST(ThreadPool, CallersFromSeveralThreadsTakeTurns) {
  ThreadPool pool(2);
  constexpr int kReps = 3000;
  std::vector<int64_t> sums(3, 0);
  std::vector<std::thread> callers;
  for (size_t c = 0; c < sums.size(); ++c) {
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < kReps; ++rep) {
        std::vector<int64_t> part(2, 0);
        pool.parallel_for(100, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) part[b == 0 ? 0 : 1] += i;
        });
        sums[c] += part[0] + part[1];
      }
    });
  }
  for (auto& t : callers) t.join();
  for (int64_t s : sums) EXPECT_EQ(s, int64_t{kReps} * 4950);
}

TEST(ThreadPool, NestedRunExecutesInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run([&](int, int) {
    pool.run([&](int index, int count) {
      EXPECT_EQ(index, 0);
      EXPECT_EQ(count, 1);
      inner.fetch_add(1);
    });
  });
  EXPECT_EQ(inner.load(), 2);  // once from each of the outer job's two threads
}

TEST(Cpu, DetectsConsistentFeatures) {
  const CpuFeatures f = detect_cpu();
  EXPECT_TRUE(!f.avx512 || f.avx2);
  EXPECT_TRUE(!f.avx512_vbmi || f.avx512);
  EXPECT_FALSE(f.summary().empty());
}

}  // namespace
}  // namespace lutq
