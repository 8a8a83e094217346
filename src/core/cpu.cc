#include "core/cpu.h"

#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdint>
#include <cstring>

namespace lutq {
namespace {

uint64_t read_xcr0() {
  uint32_t eax = 0;
  uint32_t edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool bit(uint32_t reg, int b) { return ((reg >> b) & 1u) != 0; }

// Asks Linux for this process's permission to use AMX tile data (idempotent, process-wide).
// Some kernels and hypervisors advertise AMX in cpuid but refuse it here.
bool os_grants_amx() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr long kReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
  constexpr long kXtiledata = 18;  // XFEATURE_XTILEDATA
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
#else
  return false;
#endif
}

}  // namespace

CpuFeatures detect_cpu() {
  CpuFeatures f;
  uint32_t a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(1, 0, a, b, c, d);
  const bool osxsave = bit(c, 27);
  const bool fma = bit(c, 12);
  const bool f16c = bit(c, 29);
  const bool avx = bit(c, 28);
  uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;
  __cpuid_count(7, 0, a, b, c, d);
  const uint32_t ebx7 = b, ecx7 = c, edx7 = d;
  f.avx2 = avx && os_ymm && fma && f16c && bit(ebx7, 5);
  f.avx512 = f.avx2 && os_zmm && bit(ebx7, 16) && bit(ebx7, 17) && bit(ebx7, 30) && bit(ebx7, 31);
  f.avx512_vbmi = f.avx512 && bit(ecx7, 1);
  f.avx512_vnni = f.avx512 && bit(ecx7, 11);
  f.avx512_gfni = f.avx512 && bit(ecx7, 8);
  f.avx512_fp16 = f.avx512 && bit(edx7, 23);
  const bool os_tiles = (xcr0 & 0x60000) == 0x60000;
  f.amx_int8 = f.avx512 && bit(edx7, 24) && bit(edx7, 25) && os_tiles && os_grants_amx();
  __cpuid_count(7, 1, a, b, c, d);
  f.avx512_bf16 = f.avx512 && bit(a, 5);
  f.avx_vnni = f.avx2 && bit(a, 4);

  char brand[49] = {};
  if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
    for (uint32_t i = 0; i < 3; ++i) {
      __cpuid(0x80000002u + i, a, b, c, d);
      std::memcpy(brand + 16 * i + 0, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
  }
  f.brand = brand;
  while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  return f;
}

std::string CpuFeatures::summary() const {
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(avx2, "avx2");
  add(avx_vnni, "avx-vnni");
  add(avx512, "avx512");
  add(avx512_vbmi, "vbmi");
  add(avx512_vnni, "vnni");
  add(avx512_bf16, "bf16");
  add(avx512_fp16, "fp16");
  add(amx_int8, "amx-int8");
  return s.empty() ? std::string("scalar") : s;
}

}  // namespace lutq
