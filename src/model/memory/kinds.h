// The factories of the compact memory kinds (one .cc each; the table is memory/memory.cc).
#pragma once

#include <memory>

#include "model/memory.h"

namespace lutq::model {

int64_t f16_memory_bytes(const MemoryShape& shape, const MemoryOptions& options);
std::unique_ptr<Memory> make_f16_memory(const MemoryShape& shape, const MemoryOptions& options);

int64_t q8_memory_bytes(const MemoryShape& shape, const MemoryOptions& options);
std::unique_ptr<Memory> make_q8_memory(const MemoryShape& shape, const MemoryOptions& options);

int64_t q4_memory_bytes(const MemoryShape& shape, const MemoryOptions& options);
std::unique_ptr<Memory> make_q4_memory(const MemoryShape& shape, const MemoryOptions& options);

int64_t xquant_memory_bytes(const MemoryShape& shape, const MemoryOptions& options);
std::unique_ptr<Memory> make_xquant_memory(const MemoryShape& shape, const MemoryOptions& options);

int64_t xquant_cl_memory_bytes(const MemoryShape& shape, const MemoryOptions& options);
std::unique_ptr<Memory> make_xquant_cl_memory(const MemoryShape& shape, const MemoryOptions& options);

}  // namespace lutq::model
