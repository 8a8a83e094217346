// Step broadcast: how `lutq serve` and `lutq chat` run over tensor-parallel ranks (docs/scale-out.md).
// Rank 0 owns HTTP / stdin, scheduling and sampling; every call that changes model state there
// (making a Memory, Model::forward, truncating a sequence of a Memory) first goes out as a compact
// step message, and every other rank, in follow_steps(), performs the identical call on its shard
// and its own Memory. The collectives inside forward (all-reduce, logits all-gather) then pair up
// as in `lutq run`. A stop message ends the followers when rank 0 is done.
//
// Wire format (little-endian, what the host writes; every rank of one job runs the same build):
//   header, 40 bytes: magic u32 "LQS1", kind u16, memory kind u16, memory id u32, rows u32,
//                     a i64, b i64, x_bits i32, cl_anchor i32
//       make memory: a = capacity, b = sequences, memory kind and options;
//       truncate:    a = sequence, b = length;  forward: rows = batch rows;  stop: nothing.
//   body (forward only), 16 bytes per row: token i32, seq i32, pos i32, flags u32 (bit 0: logits).
// A decode step of 4 sequences is 40 + 64 bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/batch.h"
#include "model/memory.h"

namespace lutq::model {

class Model;

enum class StepKind : uint16_t { kMakeMemory = 1, kForward = 2, kTruncate = 3, kStop = 4 };
const char* step_kind_name(StepKind kind);

inline constexpr int64_t kStepHeaderBytes = 40;
inline constexpr int64_t kStepRowBytes = 16;
inline constexpr int64_t kStepMaxRows = int64_t{1} << 20;

struct Step {
  StepKind kind = StepKind::kStop;
  uint32_t memory = 0;  // the memory the step acts on; kMakeMemory: the id the new one gets
  // kMakeMemory
  int64_t capacity = 0;
  int64_t sequences = 0;
  MemoryKind memory_kind = MemoryKind::kF32;
  MemoryOptions options;
  // kTruncate
  int32_t seq = 0;
  int64_t length = 0;
  // kForward
  std::vector<BatchRow> rows;
};

// Header and body in one buffer. Errors: a value the format cannot hold (a position or length
// beyond 2^31, more than kStepMaxRows rows, a forward without rows).
Result<std::vector<uint8_t>> encode_step(const Step& step);
// The body bytes that follow this header. Errors: not a step header (wrong size or magic, unknown
// kind or memory kind, a row count the kind does not allow).
Result<int64_t> step_body_bytes(std::span<const uint8_t> header);
// A whole message (header + body) back into a Step; the same errors, plus a body of the wrong
// size or a row with unknown flags.
Result<Step> decode_step(std::span<const uint8_t> message);

// Rank 0's side. Without a communicator, or with one rank, every call runs here only and nothing
// is sent. Over several ranks a call that cannot be sent, or a forward / memory that fails here
// after the followers were told to run it, ends every rank through Communicator::abort (the ranks
// would no longer hold the same state). Thread-safe; one leader per job (it numbers the memories).
class StepLeader {
 public:
  StepLeader(const Model& model, Communicator* comm) : model_(model), comm_(comm) {}
  ~StepLeader();
  StepLeader(const StepLeader&) = delete;
  StepLeader& operator=(const StepLeader&) = delete;

  bool broadcasting() const { return comm_ != nullptr && comm_->size() > 1; }
  const Model& model() const { return model_; }

  Result<std::unique_ptr<Memory>> make_memory(int64_t capacity, int64_t sequences, MemoryKind kind,
                                              const MemoryOptions& options);
  Status forward(const Batch& batch, Memory& memory, float* logits, ThreadPool& pool);
  Status forward(std::span<const int32_t> tokens, int64_t start_pos, Memory& memory, float* logits, ThreadPool& pool,
                 LogitsMode mode, int32_t seq);
  void truncate(Memory& memory, int32_t seq, int64_t length);
  // Sends the stop message (once; later calls and calls without followers do nothing).
  void stop();

  // Steps and bytes sent so far (docs/scale-out.md's bytes per step).
  std::pair<int64_t, int64_t> sent() const;

 private:
  void send(const Step& step);                    // aborts every rank when it cannot
  uint32_t id_of(const Memory& memory);           // aborts on a memory this leader did not make
  [[noreturn]] void fail(const std::string& what);

  const Model& model_;
  Communicator* comm_;
  mutable std::mutex mu_;
  std::vector<std::pair<const Memory*, uint32_t>> ids_;
  uint32_t next_id_ = 1;
  bool stopped_ = false;
  int64_t steps_sent_ = 0;
  int64_t bytes_sent_ = 0;
};

// A rank > 0's side: receives rank 0's steps and runs each on `model` (this rank's shard) and the
// memories the steps make, until a stop message (then ok). Errors (a message that is not a step,
// a step that fails here) are returned at once; the caller must then end every rank
// (Communicator::abort), since rank 0 would wait for this rank in the next collective.
Status follow_steps(const Model& model, Communicator& comm, ThreadPool& pool);

}  // namespace lutq::model
