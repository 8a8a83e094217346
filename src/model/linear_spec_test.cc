// LinearSpec: --override parsing, glob matching and how overrides refine the per-role choices.
#include "model/linear_spec.h"

#include <gtest/gtest.h>

#include <cmath>

namespace lutq::model {
namespace {

TEST(LinearSpec, GlobMatch) {
  EXPECT_TRUE(glob_match("blk.*.ffn_down", "blk.12.ffn_down"));
  EXPECT_TRUE(glob_match("blk.1?.*", "blk.12.attn_q.weight"));
  EXPECT_FALSE(glob_match("blk.1?.*", "blk.1.attn_q.weight"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("a*b*c", "aXbYbZc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXbYbZ"));
  EXPECT_FALSE(glob_match("blk.0.*", "blk.00.x"));
}

TEST(LinearSpec, ParsesOverrides) {
  Result<LinearOverride> o = parse_override("ffn_down=q=4,g=64,method=rtn,orientation=ic,offset=1");
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_EQ(o->pattern, "ffn_down");
  EXPECT_EQ(*o->q, 4);
  EXPECT_EQ(*o->g, 64);
  EXPECT_EQ(*o->quantizer, "rtn");
  EXPECT_EQ(*o->orientation, format::Orientation::kPerIC);
  EXPECT_TRUE(*o->offset);
  EXPECT_TRUE(parse_override("blk.0.*=dense")->dense);
  EXPECT_EQ(*parse_override("output=bits=8,group=128")->q, 8);
  EXPECT_EQ(*parse_override("ffn_down=int8")->int8_threshold, 6.0f);
  EXPECT_EQ(*parse_override("ffn_down=int8=4.5")->int8_threshold, 4.5f);
  EXPECT_TRUE(std::isinf(*parse_override("ffn_down=int8=plain")->int8_threshold));
  EXPECT_EQ(*parse_override("output=scale_bits=6")->scale_bits, 6);
  EXPECT_EQ(*parse_override("output=scale_bits=0")->scale_bits, 0);
  LinearSpec spec;
  spec.overrides.push_back(*parse_override("output=q=8,scale_bits=5"));
  EXPECT_EQ(spec.resolve("output.weight", std::nullopt).quant.scale_bits, 5);
}

TEST(LinearSpec, RejectsBadOverrides) {
  for (const char* bad : {"ffn_down", "=q=3", "ffn_down=", "ffn_down=q=9", "ffn_down=q=x", "x=g=-1",
                          "x=method=gptq2", "x=method=gptq-x", "x=orientation=row", "x=offset=yes", "x=scale_bits=3", "x=scale_bits=9", "x=colour=red", "x=fast", "x=int8=-1", "x=int8=abc"}) {
    Result<LinearOverride> o = parse_override(bad);
    ASSERT_FALSE(o.is_ok()) << bad;
    EXPECT_NE(o.status().message().find("override"), std::string::npos) << o.status().message();
  }
}

TEST(LinearSpec, OverridesApplyInOrder) {
  quant::QuantOptions q;
  q.cfg.q = 3;
  q.cfg.g = 128;
  LinearSpec spec = LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kExact);
  spec.overrides.push_back(*parse_override("ffn_down=q=4"));
  spec.overrides.push_back(*parse_override("blk.0.*=dense"));
  spec.overrides.push_back(*parse_override("blk.0.ffn_down=g=64"));
  spec.overrides.push_back(*parse_override("output=q=8"));

  const LinearChoice down1 = spec.resolve("blk.1.ffn_down.weight", LinearRole::kFfnDown);
  EXPECT_TRUE(down1.quantize);
  EXPECT_EQ(down1.quant.cfg.q, 4);
  EXPECT_EQ(down1.quant.cfg.g, 128);
  EXPECT_EQ(down1.isa, kernels::Isa::kScalar);

  EXPECT_FALSE(spec.resolve("blk.0.attn_q.weight", LinearRole::kAttnQ).quantize);
  // Dense from the glob, then quantized again by the later, more specific override.
  const LinearChoice down0 = spec.resolve("blk.0.ffn_down.weight", LinearRole::kFfnDown);
  EXPECT_TRUE(down0.quantize);
  EXPECT_EQ(down0.quant.cfg.g, 64);

  const LinearChoice default_head = LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kExact).output;
  EXPECT_TRUE(default_head.quantize);
  EXPECT_EQ(default_head.quant.cfg.q, 8);
  EXPECT_EQ(default_head.quant.method, quant::Method::kRtn);
  EXPECT_TRUE(default_head.quant.cfg.has_offset);
  const LinearChoice head = spec.resolve("output.weight", std::nullopt);
  EXPECT_TRUE(head.quantize);
  EXPECT_EQ(head.quant.cfg.q, 8);
  EXPECT_EQ(head.precision, kernels::Precision::kExact);
  EXPECT_FALSE(spec.resolve("blk.1.attn_q.weight", LinearRole::kAttnQ).quant.cfg.q == 8);

  spec.overrides.push_back(*parse_override("attn_q=method=gptq-bcq,orientation=auto"));
  const LinearChoice q3 = spec.resolve("blk.3.attn_q.weight", LinearRole::kAttnQ);
  EXPECT_TRUE(q3.gptq && q3.adadim);
  EXPECT_EQ(q3.quant.method, quant::Method::kAlternating);
  spec.overrides.push_back(*parse_override("attn_k=int8"));
  const LinearChoice k = spec.resolve("blk.2.attn_k.weight", LinearRole::kAttnK);
  EXPECT_TRUE(k.quantize && k.int8);
  EXPECT_EQ(k.int8_threshold, 6.0f);

  spec.overrides.push_back(*parse_override("attn_v=method=flexround"));
  const LinearChoice v = spec.resolve("blk.2.attn_v.weight", LinearRole::kAttnV);
  EXPECT_TRUE(v.flexround && !v.gptq);
  EXPECT_EQ(v.quant.method, quant::Method::kRtn);
  spec.overrides.push_back(*parse_override("attn_v=method=alternating,clip=1"));
  const LinearChoice v2 = spec.resolve("blk.2.attn_v.weight", LinearRole::kAttnV);
  EXPECT_TRUE(v2.clip_search && !v2.flexround);
  EXPECT_FALSE(parse_override("x=clip=2").is_ok());

  LinearSpec dense = LinearSpec::dense();
  EXPECT_FALSE(dense.any_quantized());
  EXPECT_FALSE(dense.resolve("output.weight", std::nullopt).quantize);
  dense.overrides.push_back(*parse_override("attn_v=q=2"));
  EXPECT_TRUE(dense.any_quantized());
  EXPECT_EQ(dense.resolve("blk.3.attn_v.weight", LinearRole::kAttnV).quant.cfg.q, 2);
}

}  // namespace
}  // namespace lutq::model
