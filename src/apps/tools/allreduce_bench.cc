// Test-only driver for docs/scale-out.md: the latency of the all-reduce tensor parallelism does
// twice per layer, with no model around it. Run under mpirun:
//   mpirun -np 2 lutq_allreduce_bench [FLOATS=576] [ITERATIONS=2000]
// Rank 0 prints the median and mean time per all-reduce of FLOATS fp32 values.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "comm/mpi_communicator.h"

int main(int argc, char** argv) {
  lutq::Result<std::unique_ptr<lutq::comm::MpiCommunicator>> comm = lutq::comm::MpiCommunicator::init(&argc, &argv);
  if (!comm) {
    std::fprintf(stderr, "lutq_allreduce_bench: %s\n", comm.status().message().c_str());
    return 1;
  }
  lutq::Communicator& c = **comm;
  const long floats = argc > 1 ? std::atol(argv[1]) : 576;
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 2000;
  if (floats < 1 || iterations < 1) {
    std::fprintf(stderr, "usage: lutq_allreduce_bench [FLOATS >= 1] [ITERATIONS >= 1]\n");
    return 2;
  }
  std::vector<float> x(static_cast<size_t>(floats), 1.0f);
  std::vector<double> us;
  us.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < 100; ++i) (void)c.all_reduce_sum(x.data(), floats);  // warm-up
  if (!c.barrier().is_ok()) return 1;
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (lutq::Status s = c.all_reduce_sum(x.data(), floats); !s) {
      std::fprintf(stderr, "lutq_allreduce_bench: %s\n", s.message().c_str());
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  double mean = 0.0;
  for (double v : us) mean += v / static_cast<double>(us.size());
  std::sort(us.begin(), us.end());
  if (c.rank() == 0) {
    std::printf("%d ranks, %ld floats (%ld bytes): median %.1f us, mean %.1f us, p90 %.1f us per all-reduce\n",
                c.size(), floats, floats * 4, us[us.size() / 2], mean, us[us.size() * 9 / 10]);
  }
  return 0;
}
