// A persistent pool of worker threads. The calling thread takes part as thread 0, so a pool of
// size 1 starts no thread at all. Workers spin briefly for new work and then sleep, so a run of
// back-to-back kernel calls pays no thread creation and little wake-up latency.
//
// Several threads may share one pool (a server's scheduler and a test's reference session): their
// run() calls take turns, one job at a time. A run() issued from inside a job of the same pool
// (by the caller or a worker) does not wait for the pool; it runs inline as a pool of one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace lutq {

// A non-owning reference to a callable (the callable must outlive the call that uses it).
template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(obj_, std::forward<Args>(args)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

class ThreadPool {
 public:
  // num_threads >= 1 counts the caller; values < 1 mean "all hardware threads".
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Jobs handed to the workers so far (run() calls that woke them; none on a pool of one or
  // inline): the pool round trips that `lutq bench` reports per token.
  uint64_t round_trips() const { return generation_.load(std::memory_order_relaxed); }

  // Calls fn(thread_index, size()) once on every thread of the pool and returns when all are done.
  void run(FunctionRef<void(int, int)> fn);

  // Splits [0, count) into size() contiguous ranges, each a multiple of `align` except the last,
  // and calls fn(begin, end) for each non-empty range on its own thread.
  void parallel_for(int64_t count, int64_t align, FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void worker_loop(int index);
  // True when the calling thread is inside a job of this pool.
  bool inside_job() const;

  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  FunctionRef<void(int, int)>* job_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::mutex run_mutex_;                      // one run() at a time
  std::atomic<std::thread::id> runner_{};     // the thread inside run(), if any
};

// Range [begin, end) of thread `index` among `count` threads when `total` items are split in
// multiples of `align`. Exposed for kernels that partition inside ThreadPool::run.
std::pair<int64_t, int64_t> split_range(int64_t total, int64_t align, int index, int count);

}  // namespace lutq
