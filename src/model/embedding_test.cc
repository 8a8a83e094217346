// The embedding table kept in its source type: each row dequantizes exactly as the whole tensor
// does, and the fp32 form (for a tied head) holds the same values.
#include "model/embedding.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "io/gguf_file.h"
#include "io/gguf_writer.h"

namespace lutq::model {
namespace {

// A GGUF image holding one Q8_0 table [vocab][embd] (blocks of 32: an fp16 scale, 32 int8).
std::vector<uint8_t> q8_table(int64_t vocab, int64_t embd) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> q(-127, 127);
  std::vector<uint8_t> data;
  for (int64_t b = 0; b < vocab * embd / 32; ++b) {
    const uint16_t d = fp32_to_fp16(0.01f * static_cast<float>(b % 7 + 1));
    data.push_back(static_cast<uint8_t>(d & 0xff));
    data.push_back(static_cast<uint8_t>(d >> 8));
    for (int i = 0; i < 32; ++i) data.push_back(static_cast<uint8_t>(static_cast<int8_t>(q(rng))));
  }
  io::GgufWriter wr;
  EXPECT_TRUE(wr.add_tensor("token_embd.weight", {embd, vocab}, io::GgmlType::Q8_0, data).is_ok());
  return wr.to_bytes();
}

TEST(Embedding, RowsInTheSourceTypeEqualTheDequantizedTable) {
  const int64_t vocab = 9, embd = 64;
  Result<io::GgufFile> f = io::GgufFile::from_memory(q8_table(vocab, embd), "embd.gguf");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  Result<std::vector<float>> whole = f->dequantize(*f->find_tensor("token_embd.weight"));
  ASSERT_TRUE(whole.is_ok());
  Result<Embedding> compact = Embedding::load(*f, "token_embd.weight", false);
  Result<Embedding> dense = Embedding::load(*f, "token_embd.weight", true);
  ASSERT_TRUE(compact.is_ok()) << compact.status().message();
  ASSERT_TRUE(dense.is_ok()) << dense.status().message();
  EXPECT_EQ(compact->f32(), nullptr);
  EXPECT_EQ(compact->type(), io::GgmlType::Q8_0);
  EXPECT_EQ(compact->bytes(), vocab * embd / 32 * 34);
  ASSERT_NE(dense->f32(), nullptr);
  EXPECT_EQ(dense->bytes(), vocab * embd * 4);
  std::vector<float> a(static_cast<size_t>(embd)), b(a.size());
  for (int32_t t = 0; t < vocab; ++t) {
    compact->row(t, a.data());
    dense->row(t, b.data());
    for (int64_t c = 0; c < embd; ++c) {
      ASSERT_EQ(a[static_cast<size_t>(c)], (*whole)[static_cast<size_t>(t * embd + c)]) << "token " << t << " column " << c;
      ASSERT_EQ(b[static_cast<size_t>(c)], a[static_cast<size_t>(c)]);
    }
  }
  EXPECT_FALSE(Embedding::load(*f, "missing.weight", false).is_ok());
}

}  // namespace
}  // namespace lutq::model
