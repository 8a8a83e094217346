// The fp32 KV cache: keys and values of every layer, position and sequence as computed.
#pragma once

#include <memory>

#include "model/memory.h"

namespace lutq::model {

// Bytes an fp32 cache of this shape holds.
int64_t f32_memory_bytes(const MemoryShape& shape);
std::unique_ptr<Memory> make_f32_memory(const MemoryShape& shape);

}  // namespace lutq::model
