// What the CPU offers, read once with cpuid + xgetbv.
#pragma once

#include <string>

namespace lutq {

struct CpuFeatures {
  bool avx2 = false;  // AVX2 + FMA + F16C, with the OS saving ymm state
  bool avx512 = false;  // AVX-512 F/BW/VL/DQ, with the OS saving zmm state
  bool avx512_vbmi = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx512_fp16 = false;
  bool avx_vnni = false;
  bool avx512_gfni = false;  // GFNI (vgf2p8affineqb) on zmm: AVX-512 and the GFNI cpuid bit
  std::string brand;  // e.g. "AMD EPYC 7B13"
  std::string summary() const;  // "avx2 avx512 vbmi ..." for logs and benchmarks
};

// Reads cpuid/xgetbv; cheap, but callers keep the result rather than asking per call.
CpuFeatures detect_cpu();

}  // namespace lutq
