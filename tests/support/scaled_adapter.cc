#include "support/scaled_adapter.h"

#include "core/fp16.h"
#include "lutqfile/adapter.h"
#include "lutqfile/lutq_file.h"

namespace lutq::testing {

Status write_scaled_adapter(const io::Checkpoint& file, const std::string& base_name,
                            const std::vector<std::string>& names, float factor, const std::string& out) {
  std::vector<format::BcqMatrix> mats;
  for (const std::string& n : names) {
    Result<format::BcqMatrix> w = lutqfile::read_bcq(file, n);
    if (!w) return w.status();
    const auto q = static_cast<size_t>(w->cfg.q);
    for (size_t i = 0; i < w->alpha.size(); ++i) {
      float f = factor;
      for (size_t p = 0; p < i % q; ++p) f *= factor;
      w->alpha[i] = fp32_to_fp16(fp16_to_fp32(w->alpha[i]) * f);
    }
    mats.push_back(std::move(*w));
  }
  std::vector<lutqfile::AdaptedMatrix> list;
  for (size_t i = 0; i < names.size(); ++i) list.push_back({names[i], &mats[i], nullptr});
  return lutqfile::write_adapter(out, base_name, "test", list);
}

}  // namespace lutq::testing
