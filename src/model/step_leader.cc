// StepLeader (rank 0) and follow_steps (ranks > 0): model/step_broadcast.h.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/step_broadcast.h"

namespace lutq::model {

StepLeader::~StepLeader() { stop(); }

void StepLeader::fail(const std::string& what) {
  comm_->abort("rank 0: " + what + "; ending every rank");
  std::abort();  // abort() does not return; the compiler cannot see that through the virtual call
}

void StepLeader::send(const Step& step) {
  Result<std::vector<uint8_t>> bytes = encode_step(step);
  if (!bytes) fail(bytes.status().message());
  // The header goes first with the idle-friendly broadcast the followers wait in; the rows after.
  Status st = comm_->broadcast_idle(bytes->data(), kStepHeaderBytes, 0);
  const auto body = static_cast<int64_t>(bytes->size()) - kStepHeaderBytes;
  if (st && body > 0) st = comm_->broadcast(bytes->data() + kStepHeaderBytes, body, 0);
  if (!st) fail(std::string("cannot send the ") + step_kind_name(step.kind) + " step: " + st.message());
  ++steps_sent_;
  bytes_sent_ += static_cast<int64_t>(bytes->size());
}

uint32_t StepLeader::id_of(const Memory& memory) {
  for (const auto& [m, id] : ids_) {
    if (m == &memory) return id;
  }
  fail("a memory that was not made through the step leader");
}

Result<std::unique_ptr<Memory>> StepLeader::make_memory(int64_t capacity, int64_t sequences, MemoryKind kind,
                                                        const MemoryOptions& options) {
  if (!broadcasting()) return model_.make_memory(capacity, sequences, kind, options);
  std::lock_guard<std::mutex> lock(mu_);
  // The followers need the capacity make_memory would pick for <= 0 (the trained context).
  const int64_t cap = capacity > 0 ? capacity : model_.config().context_length;
  Step step;
  step.kind = StepKind::kMakeMemory;
  step.memory = next_id_++;
  step.capacity = cap;
  step.sequences = sequences;
  step.memory_kind = kind;
  step.options = options;
  send(step);
  Result<std::unique_ptr<Memory>> m = model_.make_memory(cap, sequences, kind, options);
  if (!m) fail("cannot make the memory: " + m.status().message());
  std::erase_if(ids_, [&](const auto& e) { return e.first == m->get(); });  // an address reused
  ids_.emplace_back(m->get(), step.memory);
  return m;
}

Status StepLeader::forward(const Batch& batch, Memory& memory, float* logits, ThreadPool& pool) {
  if (!broadcasting()) return model_.forward(batch, memory, logits, pool);
  std::lock_guard<std::mutex> lock(mu_);
  Step step;
  step.kind = StepKind::kForward;
  step.memory = id_of(memory);
  step.rows = batch.rows;
  send(step);
  const Status st = model_.forward(batch, memory, logits, pool);
  if (!st) fail("a forward step failed after the other ranks were sent it: " + st.message());
  return st;
}

Status StepLeader::forward(std::span<const int32_t> tokens, int64_t start_pos, Memory& memory, float* logits,
                           ThreadPool& pool, LogitsMode mode, int32_t seq) {
  if (!broadcasting()) return model_.forward(tokens, start_pos, memory, logits, pool, mode, nullptr, seq);
  return forward(Batch::sequence(tokens, start_pos, seq, mode), memory, logits, pool);
}

void StepLeader::truncate(Memory& memory, int32_t seq, int64_t length) {
  if (broadcasting()) {
    std::lock_guard<std::mutex> lock(mu_);
    Step step;
    step.kind = StepKind::kTruncate;
    step.memory = id_of(memory);
    step.seq = seq;
    step.length = std::max<int64_t>(length, 0);
    send(step);
  }
  memory.truncate(seq, length);
}

void StepLeader::stop() {
  if (!broadcasting()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) return;
  stopped_ = true;
  send(Step{});
}

std::pair<int64_t, int64_t> StepLeader::sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {steps_sent_, bytes_sent_};
}

namespace {

// One step on this rank; `memories` holds what earlier steps made.
Status run_step(const Model& model, const Step& step, std::map<uint32_t, std::unique_ptr<Memory>>& memories,
                std::vector<float>& logits, ThreadPool& pool) {
  if (step.kind == StepKind::kMakeMemory) {
    Result<std::unique_ptr<Memory>> m = model.make_memory(step.capacity, step.sequences, step.memory_kind, step.options);
    if (!m) return Status(m.status().code(), "cannot make the memory rank 0 made: " + m.status().message());
    memories[step.memory] = std::move(*m);
    return Status::ok();
  }
  auto it = memories.find(step.memory);
  if (it == memories.end()) return Status::invalid("a step on memory " + std::to_string(step.memory) + ", never made");
  Memory& memory = *it->second;
  if (step.kind == StepKind::kTruncate) {
    if (step.seq >= memory.sequences()) return Status::invalid("truncate of sequence " + std::to_string(step.seq));
    memory.truncate(step.seq, step.length);
    return Status::ok();
  }
  Batch batch;
  batch.rows = step.rows;
  logits.resize(static_cast<size_t>(std::max<int64_t>(batch.logits_rows(), 1) * model.config().n_vocab));
  return model.forward(batch, memory, logits.data(), pool);
}

}  // namespace

Status follow_steps(const Model& model, Communicator& comm, ThreadPool& pool) {
  std::map<uint32_t, std::unique_ptr<Memory>> memories;
  std::vector<float> logits;
  std::vector<uint8_t> message;
  while (true) {
    message.assign(static_cast<size_t>(kStepHeaderBytes), 0);
    if (Status st = comm.broadcast_idle(message.data(), kStepHeaderBytes, 0); !st) {
      return Status(st.code(), "waiting for rank 0's next step: " + st.message());
    }
    Result<int64_t> body = step_body_bytes(message);
    if (!body) return body.status();
    if (*body > 0) {
      message.resize(static_cast<size_t>(kStepHeaderBytes + *body));
      if (Status st = comm.broadcast(message.data() + kStepHeaderBytes, *body, 0); !st) {
        return Status(st.code(), "receiving a step's rows: " + st.message());
      }
    }
    Result<Step> step = decode_step(message);
    if (!step) return step.status();
    if (step->kind == StepKind::kStop) return Status::ok();
    if (Status st = run_step(model, *step, memories, logits, pool); !st) {
      return Status(st.code(), std::string("the ") + step_kind_name(step->kind) + " step failed here: " + st.message());
    }
  }
}

}  // namespace lutq::model
