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
  // AMX-TILE + AMX-INT8 that this process may use: the cpuid bits, the OS saving tile state
  // (XCR0 bits 17-18) and Linux granting the tile data to the process (detect_cpu asks with
  // arch_prctl(ARCH_REQ_XCOMP_PERM); without that grant the first tile instruction faults).
  bool amx_int8 = false;
  std::string brand;  // e.g. "AMD EPYC 7B13"
  std::string summary() const;  // "avx2 avx512 vbmi ..." for logs and benchmarks
};

// Reads cpuid/xgetbv and asks Linux for the AMX tile permission. Not cheap: a virtual machine
// traps cpuid (~38 µs per call measured on a Zen 5 VM), so callers keep the result rather than
// asking per call.
CpuFeatures detect_cpu();

}  // namespace lutq
