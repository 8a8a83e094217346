#include <cstdlib>
#include <string>

#include "kernels/kernel.h"
#include "kernels/linear.h"

namespace lutq::kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kCuda: return "cuda";
  }
  return "?";
}

Result<Isa> parse_isa(std::string_view name) {
  for (int i = 0; i < kNumIsas; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  return Status::invalid("unknown ISA '" + std::string(name) + "': expected ref, scalar, avx2, avx512 or cuda");
}

const char* precision_name(Precision p) { return p == Precision::kExact ? "exact" : "fast"; }

Result<Precision> parse_precision(std::string_view name) {
  if (name == "exact") return Precision::kExact;
  if (name == "fast") return Precision::kFast;
  return Status::invalid("unknown table precision '" + std::string(name) + "': expected exact or fast");
}

PackedMatrix canonical_packed(const format::BcqMatrix& w, Isa isa, Precision p) {
  PackedMatrix out;
  out.isa = isa;
  out.precision = p;
  out.source = w;
  return out;
}

format::BcqMatrix canonical_unpack(const PackedMatrix& w) { return w.source; }

PackedMatrix scalar_spec(const format::BcqMatrix& w, const PackedMatrix& under_test) {
  PackedMatrix s = scalar_backend().repack(w, under_test.precision);
  s.uniform = under_test.uniform;
  return s;
}

const Backend& backend(Isa isa) {
  switch (isa) {
    case Isa::kRef: return ref_backend();
    case Isa::kScalar: return scalar_backend();
    case Isa::kAvx2: return avx2_backend();
    case Isa::kAvx512: return avx512_backend();
    case Isa::kCuda: return cuda_backend();
  }
  return ref_backend();
}

std::vector<Isa> available_isas(const CpuFeatures& cpu) {
  std::vector<Isa> out;
  // cuda comes after ref, which is always available, so it is never the default: its host entry
  // point copies activations over PCIe on every call; it is used when asked for.
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kScalar, Isa::kRef, Isa::kCuda}) {
    if (backend(isa).available(cpu)) out.push_back(isa);
  }
  return out;
}

Result<Isa> select_isa(const CpuFeatures& cpu, std::optional<Isa> requested) {
  if (!requested) {
    if (const char* env = std::getenv("LUTQ_ISA"); env != nullptr && *env != '\0') {
      Result<Isa> parsed = parse_isa(env);
      if (!parsed) return Status::invalid("LUTQ_ISA: " + parsed.status().message());
      requested = *parsed;
    }
  }
  if (requested) {
    if (*requested == Isa::kCuda && !backend(Isa::kCuda).available(cpu)) {
      return Status::unsupported("ISA cuda is not available: " + cuda_unavailable_reason());
    }
    if (!backend(*requested).available(cpu)) {
      return Status::unsupported(std::string("ISA ") + isa_name(*requested) + " is not available on this CPU (" +
                                 cpu.summary() + ")");
    }
    return *requested;
  }
  return available_isas(cpu).front();
}

}  // namespace lutq::kernels
