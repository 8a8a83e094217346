#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lutq {
namespace {

void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// How long an idle worker spins before it sleeps (iterations of pause, roughly 50-100 us).
constexpr int kSpinIterations = 20000;

}  // namespace

std::pair<int64_t, int64_t> split_range(int64_t total, int64_t align, int index, int count) {
  if (align < 1) align = 1;
  const int64_t units = (total + align - 1) / align;
  const int64_t begin_unit = units * index / count;
  const int64_t end_unit = units * (index + 1) / count;
  return {std::min(total, begin_unit * align), std::min(total, end_unit * align)};
}

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads < 1) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  workers_.reserve(static_cast<size_t>(num_threads - 1));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::inside_job() const {
  const std::thread::id self = std::this_thread::get_id();
  if (runner_.load(std::memory_order_acquire) == self) return true;
  for (const std::thread& t : workers_) {
    if (t.get_id() == self) return true;
  }
  return false;
}

void ThreadPool::run(FunctionRef<void(int, int)> fn) {
  const int n = size();
  if (n == 1 || inside_job()) {
    fn(0, 1);
    return;
  }
  std::lock_guard<std::mutex> turn(run_mutex_);
  runner_.store(std::this_thread::get_id(), std::memory_order_release);
  job_ = &fn;
  pending_.store(n - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
  fn(0, n);
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
  job_ = nullptr;
  runner_.store(std::thread::id{}, std::memory_order_release);
}

void ThreadPool::parallel_for(int64_t count, int64_t align, FunctionRef<void(int64_t, int64_t)> fn) {
  run([&](int index, int threads) {
    auto [begin, end] = split_range(count, align, index, threads);
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::worker_loop(int index) {
  // Generation 0 is "no work yet": a run() may start before this thread does.
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    uint64_t now = generation_.load(std::memory_order_acquire);
    while (now == seen && spins < kSpinIterations) {
      cpu_relax();
      ++spins;
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      now = generation_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stop_.load(std::memory_order_acquire)) return;
    (*job_)(index, size());
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace lutq
