// A model quantized with compressed scales (--scale-bits): the file (format version 2) loads to
// the same model as quantizing at load with the same options (identical logits), its matrices
// carry the codes, and the report's bits per weight count the compressed form.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/thread_pool.h"
#include "io/gguf_file.h"
#include "lutqfile/lutq_file.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"
#include "support/tiny_model.h"

namespace lutq::model {
namespace {

using testing::load_tiny;
using testing::make_tiny;
using testing::open_tiny;
using testing::prefill_all;

LinearSpec spec_with(int scale_bits) {
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = 3;
  qo.cfg.g = 32;
  qo.cfg.has_offset = true;
  qo.scale_bits = scale_bits;
  LinearSpec spec = LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
  spec.overrides.push_back(*parse_override("blk.1.attn_v=q=2,method=rtn,orientation=ic"));
  if (scale_bits > 0) spec.overrides.push_back(*parse_override("output=q=4,scale_bits=5"));
  return spec;
}

TEST(ScaleCodesModel, FileLoadsToTheSameModelAsQuantizingAtLoad) {
  const testing::Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("lutq_test_" + std::to_string(::getpid()) + "_codes.lutq")).string();
  const LinearSpec spec = spec_with(6);
  Result<pipeline::QuantizeReport> report = pipeline::quantize_to_file(f, spec, path, pool);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  const std::string plain_path = path + ".fp16";
  Result<pipeline::QuantizeReport> plain = pipeline::quantize_to_file(f, spec_with(0), plain_path, pool);
  ASSERT_TRUE(plain.is_ok()) << plain.status().message();
  EXPECT_LT(report->linear_bpw(), plain->linear_bpw());

  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  // The RTN layers' scales are uniform, stored once per group: version 3 for both.
  EXPECT_EQ(*lf->get_int(lutqfile::kVersionKey), lutqfile::kFormatVersionUniform);
  EXPECT_EQ(*io::GgufFile::open(plain_path)->get_int(lutqfile::kVersionKey), lutqfile::kFormatVersionUniform);
  Result<format::BcqMatrix> v = lutqfile::read_bcq(*lf, "blk.1.attn_v.weight");
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  EXPECT_EQ(v->codes.bits, 6);
  EXPECT_EQ(v->cfg.orientation, format::Orientation::kPerIC);
  EXPECT_EQ((*lutqfile::find_bcq(*lf, "output.weight"))->scale_bits, 5);

  LoadOptions from_file;
  from_file.isa = kernels::Isa::kScalar;
  from_file.precision = kernels::Precision::kExact;
  const Model a = load_tiny(*lf, pool, from_file);
  LoadOptions at_load;
  at_load.linear = spec;
  at_load.isa = kernels::Isa::kScalar;
  const Model b = load_tiny(f, pool, at_load);
  const std::vector<int32_t> tokens = {3, 17, 42, 0, 49, 17, 8};
  EXPECT_EQ(prefill_all(a, tokens, pool), prefill_all(b, tokens, pool));
  std::filesystem::remove(path);
  std::filesystem::remove(plain_path);
}

}  // namespace
}  // namespace lutq::model
