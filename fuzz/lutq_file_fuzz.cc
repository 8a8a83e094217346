// libFuzzer target for the lutq file's own entries, scale adapters and tune checkpoints
// (train/tune_state.h): parse arbitrary bytes
// as GGUF; when they parse, read every BCQ, int8 and QMoE entry the metadata names (experts'
// entries included: blk.L.ffn_up_exps.e.weight) and the file as an adapter. A read either fails with a status or yields a matrix that format::validate accepts; no
// damaged shape may make the reader allocate beyond what the file holds (ASan's allocation
// limit reports that as a crash). Seeds: fuzz/make_lutq_seeds.py (CMake target lutq_file_fuzz).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "format/bcq_matrix.h"
#include "format/scale_codes.h"
#include "io/gguf_file.h"
#include "lutqfile/adapter.h"
#include "lutqfile/lutq_file.h"
#include "lutqfile/qmoe_entry.h"
#include "train/tune_state.h"

namespace {

void require(bool cond) {
  if (!cond) std::abort();  // an invariant does not hold: report as a crash
}

void read_entries(const lutq::io::GgufFile& f) {
  lutq::lutqfile::QmoeDictionaries dicts;
  for (const std::string& key : f.keys()) {
    if (key.starts_with(lutq::lutqfile::kBcqKeyPrefix)) {
      const std::string name = key.substr(lutq::lutqfile::kBcqKeyPrefix.size());
      const lutq::Result<lutq::format::BcqMatrix> w = lutq::lutqfile::read_bcq(f, name);
      if (w.is_ok()) {
        require(lutq::format::validate(*w).is_ok());
        require(lutq::format::validate_codes(*w).is_ok());
        require(lutq::format::scales_match_codes(*w));
        require(lutq::lutqfile::has_weight(f, name));
        require(lutq::lutqfile::weight_dims(f, name).has_value());
      }
    } else if (key.starts_with(lutq::lutqfile::kInt8KeyPrefix)) {
      const std::string name = key.substr(lutq::lutqfile::kInt8KeyPrefix.size());
      const auto e = lutq::lutqfile::read_int8(f, name);
      if (e.is_ok() && e->has_value()) require((*e)->q.size() == static_cast<size_t>((*e)->n * (*e)->k));
    } else if (key.starts_with(lutq::lutqfile::kQmoeKeyPrefix) && !key.ends_with(".dict")) {
      const std::string name = key.substr(lutq::lutqfile::kQmoeKeyPrefix.size());
      const auto m = lutq::lutqfile::read_qmoe(f, name, dicts);
      if (m.is_ok() && m->has_value()) {
        require(lutq::format::validate(**m).is_ok());
        require(lutq::lutqfile::has_weight(f, name));
        require(lutq::lutqfile::weight_dims(f, name).has_value());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lutq::Result<lutq::io::GgufFile> f = lutq::io::GgufFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.lutq");
  if (!f.is_ok()) return 0;
  (void)lutq::lutqfile::is_lutq_file(*f);
  read_entries(*f);
  const auto adapter = lutq::lutqfile::Adapter::from_checkpoint(*f);
  if (adapter.is_ok()) {
    require((*adapter)->size() == (*adapter)->names().size() && (*adapter)->size() > 0);
    require((*adapter)->scale_bytes() >= 0);
  }
  const auto state = lutq::train::read_tune_state(*f);
  if (state.is_ok()) {
    for (const auto& t : state->tensors) require(t.m.size() == t.params.size() && t.v.size() == t.params.size());
  }
  return 0;
}
