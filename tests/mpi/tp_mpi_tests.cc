// Tensor parallelism under real MPI ranks: run as `mpirun -np N lutq_mpi_tests` (ctest mpi_tp_npN).
// Every rank loads the whole tiny model (no communicator) and its shard (MPI), runs the same
// prefill and checks its logits against the whole model's within the derived bound
// (support/tp_check.h). LUTQ_TP_MODEL=path.gguf adds the same check on a real model.
//
// `lutq_mpi_tests --write-tiny PATH [SEED]` writes the tiny model (for load_failure.sh) and exits.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "io/gguf_file.h"
#include "model/model.h"
#include "support/tiny_model.h"
#include "support/tp_check.h"

namespace lutq {
namespace {

testing::TinySpec three_kv_heads(const std::string& arch, uint32_t seed = 7) {
  testing::TinySpec s;
  s.arch = arch;
  s.n_embd = 96;
  s.n_head = 6;
  s.n_head_kv = 3;
  s.n_ff = 192;
  s.seed = seed;
  return s;
}

// Logits of every position of `tokens` from the whole model and from this rank's shard.
// Exact LUT precision: the fast one rounds the lookup tables built from each rank's part of the
// activations, a difference the fp32 reassociation bound does not cover (docs/scale-out.md).
void expect_shard_matches(const io::Checkpoint& ckpt, Communicator& comm, const std::vector<int32_t>& tokens) {
  ThreadPool pool(1);
  model::LoadOptions whole;
  whole.precision = kernels::Precision::kExact;
  Result<model::Model> single = model::Model::load(ckpt, whole, pool);
  ASSERT_TRUE(single.is_ok()) << single.status().message();
  model::LoadOptions opt = whole;
  opt.comm = &comm;
  Result<model::Model> shard = model::Model::load(ckpt, opt, pool);
  ASSERT_TRUE(shard.is_ok()) << shard.status().message();
  const std::vector<float> want = testing::prefill_all(*single, tokens, pool);
  const std::vector<float> got = testing::prefill_all(*shard, tokens, pool);
  const double bound = testing::tp_logit_bound(single->config(), want);
  const double diff = testing::max_abs_diff(got, want);
  EXPECT_LE(diff, bound) << "rank " << comm.rank() << " of " << comm.size();
  std::printf("rank %d of %d: max |logit difference| %.3g (bound %.3g)\n", comm.rank(), comm.size(), diff, bound);
  // Every rank holds the same logits (rank 0's are broadcast and compared).
  std::vector<float> root = got;
  ASSERT_TRUE(comm.broadcast(root.data(), static_cast<int64_t>(root.size() * sizeof(float)), 0).is_ok());
  EXPECT_EQ(root, got) << "rank " << comm.rank() << " disagrees with rank 0";
}

void tiny_case(Communicator& comm, const std::string& arch) {
  const testing::Tiny t = testing::make_tiny(three_kv_heads(arch));
  const io::GgufFile f = testing::open_tiny(t);
  expect_shard_matches(f, comm, {1, 7, 3, 11, 2, 9});
}

void real_model_case(Communicator& comm) {
  const char* path = std::getenv("LUTQ_TP_MODEL");
  if (path == nullptr) GTEST_SKIP() << "set LUTQ_TP_MODEL to a GGUF file to check a real model";
  Result<io::GgufFile> f = io::GgufFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  expect_shard_matches(*f, comm, {1, 100, 2000, 300, 4000, 50, 600, 7000});
}

int write_tiny(const std::string& path, uint32_t seed) {
  testing::TinySpec spec = three_kv_heads("llama", seed);
  spec.tokenizer_model = "llama";  // `lutq serve` / `lutq chat` need a tokenizer
  spec.ctx = 512;
  const testing::Tiny t = testing::make_tiny(spec);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  return out ? 0 : 1;
}

}  // namespace
}  // namespace lutq

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--write-tiny") {
    return lutq::write_tiny(argv[2], argc >= 4 ? static_cast<uint32_t>(std::atoi(argv[3])) : 7u);
  }
  lutq::Result<std::unique_ptr<lutq::comm::MpiCommunicator>> comm = lutq::comm::MpiCommunicator::init(&argc, &argv);
  if (!comm) {
    std::fprintf(stderr, "lutq_mpi_tests: %s\n", comm.status().message().c_str());
    return 1;
  }
  lutq::Communicator& c = **comm;
  ::testing::InitGoogleTest(&argc, argv);
  if (c.rank() != 0) {
    ::testing::TestEventListeners& l = ::testing::UnitTest::GetInstance()->listeners();
    delete l.Release(l.default_result_printer());
  }
  for (const char* arch : {"llama", "qwen2", "qwen3"}) {
    ::testing::RegisterTest("TensorParallelMpi", (std::string("ShardEqualsWhole_") + arch).c_str(), nullptr, nullptr,
                            __FILE__, __LINE__, [&c, arch]() -> ::testing::Test* {
                              struct Case : ::testing::Test {
                                Case(lutq::Communicator& comm, std::string a) : comm_(comm), arch_(std::move(a)) {}
                                void TestBody() override { lutq::tiny_case(comm_, arch_); }
                                lutq::Communicator& comm_;
                                std::string arch_;
                              };
                              return new Case(c, arch);
                            });
  }
  ::testing::RegisterTest("TensorParallelMpi", "RealModelShardEqualsWhole", nullptr, nullptr, __FILE__, __LINE__,
                          [&c]() -> ::testing::Test* {
                            struct Case : ::testing::Test {
                              explicit Case(lutq::Communicator& comm) : comm_(comm) {}
                              void TestBody() override { lutq::real_model_case(comm_); }
                              lutq::Communicator& comm_;
                            };
                            return new Case(c);
                          });
  const int failed = RUN_ALL_TESTS();
  // Any rank's failure fails every rank, so mpirun's exit status reports it.
  float any = failed != 0 ? 1.0f : 0.0f;
  if (!c.all_reduce_sum(&any, 1).is_ok()) return 1;
  return any > 0.0f ? 1 : 0;
}
