#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gen/bpe.h"
#include "gen/chat_template.h"
#include "gen/pre_tokenizer.h"
#include "gen/tokenizer.h"
#include "gen/unicode.h"
#include "io/gguf_file.h"

namespace lutq::gen {
namespace {

namespace fs = std::filesystem;

// The tokenizer test vectors: $LUTQ_SHARED_DIR (the shared folder or its data/ folder), else
// ../shared/data from the working directory, else /work/shared/data.
std::optional<fs::path> tokenizer_data_dir() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("LUTQ_SHARED_DIR"); env != nullptr && *env != '\0') {
    candidates.emplace_back(fs::path(env) / "tokenizer");
    candidates.emplace_back(fs::path(env) / "data" / "tokenizer");
  }
  candidates.emplace_back(fs::path("../shared/data/tokenizer"));
  candidates.emplace_back(fs::path("/work/shared/data/tokenizer"));
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) return p;
  }
  return std::nullopt;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct TestVector {
  std::string text;
  std::vector<int32_t> ids;
};

// .inp: test strings separated by "\n__ggml_vocab_test__\n"; .out: one line of ids per string
// (llama.cpp's test-tokenizer-0 format).
std::vector<TestVector> read_vectors(const fs::path& inp, const fs::path& out) {
  const std::string raw = read_file(inp);
  static constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(kSeparator, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + kSeparator.size();
  }
  std::vector<TestVector> vectors;
  std::istringstream lines(read_file(out));
  std::string line;
  for (size_t i = 0; i < texts.size() && std::getline(lines, line); ++i) {
    TestVector v{texts[i], {}};
    std::istringstream ids(line);
    for (int32_t id = 0; ids >> id;) v.ids.push_back(id);
    vectors.push_back(std::move(v));
  }
  EXPECT_EQ(vectors.size(), texts.size()) << inp << " and " << out << " disagree on the number of tests";
  return vectors;
}

std::string ids_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (const int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

std::string escaped(std::string_view text) {
  std::string s;
  for (const char c : text) {
    if (c == '\n') {
      s += "\\n";
    } else if (c == '\t') {
      s += "\\t";
    } else {
      s += c;
    }
  }
  return s;
}

// The vocabulary `name` (ggml-vocab-NAME.gguf) or nullopt with a reason to skip.
std::optional<Tokenizer> load_vocab(const std::string& name, std::string& skip_reason) {
  const std::optional<fs::path> dir = tokenizer_data_dir();
  if (!dir) {
    skip_reason = "tokenizer test data not found (set LUTQ_SHARED_DIR or provide ../shared/data)";
    return std::nullopt;
  }
  const fs::path path = *dir / ("ggml-vocab-" + name + ".gguf");
  Result<io::GgufFile> file = io::GgufFile::open(path.string());
  if (!file) {
    ADD_FAILURE() << file.status().message();
    return std::nullopt;
  }
  Result<Tokenizer> tok = Tokenizer::from_checkpoint(*file);
  if (!tok) {
    ADD_FAILURE() << tok.status().message();
    return std::nullopt;
  }
  return std::move(*tok);
}

// Encodes every test vector the way llama.cpp's test-tokenizer-0 does (no BOS, special tokens
// as text) and checks the ids and decode(encode(s)) == s.
void check_vectors(const std::string& name) {
  std::string skip;
  const std::optional<Tokenizer> tok = load_vocab(name, skip);
  if (!tok) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  const fs::path dir = *tokenizer_data_dir();
  const std::string base = "ggml-vocab-" + name + ".gguf";
  const std::vector<TestVector> vectors = read_vectors(dir / (base + ".inp"), dir / (base + ".out"));
  ASSERT_FALSE(vectors.empty());
  size_t passed = 0;
  for (const TestVector& v : vectors) {
    const std::vector<int32_t> got = tok->encode(v.text, /*add_special=*/false, /*parse_special=*/false);
    if (got != v.ids) {
      ADD_FAILURE() << name << ": first mismatch for input '" << escaped(v.text) << "'\n  expected: "
                    << ids_string(v.ids) << "\n  got:      " << ids_string(got);
      return;
    }
    const std::string back = tok->decode(got);
    if (back != v.text) {
      ADD_FAILURE() << name << ": decode(encode(s)) != s for '" << escaped(v.text) << "': got '" << escaped(back)
                    << "'";
      return;
    }
    ++passed;
  }
  EXPECT_EQ(passed, vectors.size());
}

TEST(TokenizerVectors, Gpt2) { check_vectors("gpt-2"); }
TEST(TokenizerVectors, LlamaBpe) { check_vectors("llama-bpe"); }
TEST(TokenizerVectors, LlamaSpm) { check_vectors("llama-spm"); }
TEST(TokenizerVectors, Qwen2) { check_vectors("qwen2"); }

TEST(TokenizerSpecial, ChatMlControlTokensNeedParseSpecial) {
  std::string skip;
  const std::optional<Tokenizer> tok = load_vocab("qwen2", skip);
  if (!tok) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  const std::string text = "<|im_start|>user\nHi there<|im_end|>\n";
  const std::vector<int32_t> parsed = tok->encode(text, false, true);
  ASSERT_GE(parsed.size(), 4u);
  EXPECT_EQ(parsed.front(), 151644);  // <|im_start|>
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), 151645), parsed.end());  // <|im_end|>
  EXPECT_EQ(tok->decode(parsed, /*render_special=*/true), text);
  EXPECT_EQ(tok->decode(parsed), "user\nHi there\n");

  const std::vector<int32_t> plain = tok->encode(text, false, false);
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 151644), plain.end());
  EXPECT_EQ(tok->decode(plain), text);

  EXPECT_TRUE(tok->is_eog(151645));
  EXPECT_TRUE(tok->is_eog(151643));  // <|endoftext|>
  EXPECT_FALSE(tok->is_eog(151644));
  EXPECT_EQ(tok->token_to_piece(151644), "");
  EXPECT_EQ(tok->token_to_piece(151644, true), "<|im_start|>");
}

TEST(TokenizerSpecial, Llama3BosAndEog) {
  std::string skip;
  const std::optional<Tokenizer> tok = load_vocab("llama-bpe", skip);
  if (!tok) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  EXPECT_EQ(tok->bos(), 128000);
  EXPECT_EQ(tok->eos(), 128001);
  EXPECT_EQ(tok->vocab_size(), 128256);
  const std::vector<int32_t> ids = tok->encode("Hello world", /*add_special=*/true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{128000, 9906, 1917}));
  EXPECT_EQ(tok->decode(ids), "Hello world");
  const std::vector<int32_t> turn =
      tok->encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", false, true);
  EXPECT_EQ(turn.front(), 128006);
  EXPECT_EQ(turn.back(), 128009);
  EXPECT_TRUE(tok->is_eog(128009));
  EXPECT_TRUE(tok->is_eog(128001));
  EXPECT_FALSE(tok->is_eog(9906));
}

TEST(TokenizerSpecial, SpmBosAndDummyPrefix) {
  std::string skip;
  const std::optional<Tokenizer> tok = load_vocab("llama-spm", skip);
  if (!tok) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  const std::vector<int32_t> ids = tok->encode("Hello world", /*add_special=*/true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok->decode(ids), "Hello world");
  // After a parsed special token the text run gets its dummy prefix again.
  const std::vector<int32_t> two = tok->encode("Hello</s>world", false, true);
  EXPECT_EQ(two, (std::vector<int32_t>{15043, 2, 3186}));
  EXPECT_EQ(tok->decode(two, true), "Hello</s>world");
  EXPECT_EQ(tok->token_to_piece(15043), " Hello");
  EXPECT_EQ(tok->token_to_piece(3 + 0x41), "A");  // <0x41>
  EXPECT_TRUE(tok->is_eog(2));
}

TEST(TokenizerRobustness, InvalidUtf8RoundTrips) {
  const std::string inputs[] = {
      std::string("\xff\xfe abc \xc3", 8), std::string("ok\x80\x80 go", 7), std::string("\xe2\x82", 2),
      std::string("a\xed\xa0\x80z", 5),  // an encoded surrogate
      std::string("x\0y", 3),
  };
  for (const char* name : {"gpt-2", "llama-bpe", "llama-spm", "qwen2"}) {
    std::string skip;
    const std::optional<Tokenizer> tok = load_vocab(name, skip);
    if (!tok) {
      if (!skip.empty()) GTEST_SKIP() << skip;
      return;
    }
    for (const std::string& s : inputs) {
      const std::vector<int32_t> ids = tok->encode(s, false, false);
      for (const int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size()) << name;
      EXPECT_EQ(tok->decode(ids), s) << name << ": " << ids_string(ids);
    }
  }
}

// Timing is recorded (the test's properties in the XML report), never asserted.
TEST(TokenizerPerformance, EncodesAMegabyte) {
  const std::optional<fs::path> dir = tokenizer_data_dir();
  if (!dir) GTEST_SKIP() << "tokenizer test data not found";
  const fs::path text_path = dir->parent_path() / "text" / "sotu-eval.txt";
  std::string text = read_file(text_path);
  if (text.empty()) GTEST_SKIP() << "no text at " << text_path;
  while (text.size() < (1u << 20)) text += text;  // 0.77 MB: repeat up to 1 MB
  text.resize(1u << 20);
  while (!text.empty() && (static_cast<uint8_t>(text.back()) & 0xC0) == 0x80) text.pop_back();
  for (const char* name : {"gpt-2", "llama-spm"}) {  // one of each family
    std::string skip;
    const std::optional<Tokenizer> tok = load_vocab(name, skip);
    ASSERT_TRUE(tok) << skip;
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->encode(text, false, false);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    RecordProperty(std::string("encode_1MB_ms_") + name, static_cast<int>(seconds * 1000));
    std::printf("encode 1 MB (%s): %.0f ms\n", name, seconds * 1000);
    EXPECT_GT(ids.size(), text.size() / 8);
    EXPECT_EQ(tok->decode(ids), text) << name;
  }
}

// --- Tests that need no data files --------------------------------------------------------

TEST(TokenizerUnicode, Categories) {
  EXPECT_EQ(unicode_category('A'), UnicodeCategory::kLetter);
  EXPECT_EQ(unicode_category('7'), UnicodeCategory::kNumber);
  EXPECT_EQ(unicode_category('!'), UnicodeCategory::kPunctuation);
  EXPECT_EQ(unicode_category('+'), UnicodeCategory::kSymbol);
  EXPECT_EQ(unicode_category(' '), UnicodeCategory::kSeparator);
  EXPECT_EQ(unicode_category('\n'), UnicodeCategory::kOther);
  EXPECT_EQ(unicode_category(0xBD), UnicodeCategory::kNumber);   // ½
  EXPECT_EQ(unicode_category(0x17B6), UnicodeCategory::kMark);   // Khmer vowel sign aa
  EXPECT_EQ(unicode_category(0x4E2D), UnicodeCategory::kLetter); // 中
  EXPECT_EQ(unicode_category(0x1F680), UnicodeCategory::kSymbol);  // 🚀
  EXPECT_EQ(unicode_category(0x10FFFF), UnicodeCategory::kOther);
  EXPECT_TRUE(unicode_is_whitespace(0x3000));
  EXPECT_TRUE(unicode_is_whitespace('\t'));
  EXPECT_FALSE(unicode_is_whitespace(0x200B));  // zero width space is no White_Space
}

std::vector<std::string> split(PreTokenizerKind kind, std::string_view text) {
  std::vector<std::string_view> words;
  pre_tokenize(kind, text, words);
  return {words.begin(), words.end()};
}

using Words = std::vector<std::string>;

TEST(TokenizerPreTokenizer, Gpt2) {
  EXPECT_EQ(split(PreTokenizerKind::kGpt2, "Hello world's 12345  x!!"),
            (Words{"Hello", " world", "'s", " 12345", " ", " x", "!!"}));
  EXPECT_EQ(split(PreTokenizerKind::kGpt2, "I'VE  \n"), (Words{"I", "'", "VE", "  \n"}));
}

TEST(TokenizerPreTokenizer, Llama3AndQwen2Digits) {
  EXPECT_EQ(split(PreTokenizerKind::kLlama3, "I'VE 1234567 x\n\n y"),
            (Words{"I", "'VE", " ", "123", "456", "7", " x", "\n\n", " y"}));
  EXPECT_EQ(split(PreTokenizerKind::kQwen2, "a 123"), (Words{"a", " ", "1", "2", "3"}));
}

TEST(TokenizerPreTokenizer, SmolLmSplitsDigitsFirst) {
  EXPECT_EQ(split(PreTokenizerKind::kSmolLm, "abc 123 x45y"),
            (Words{"abc", " ", "1", "2", "3", " x", "4", "5", "y"}));
}

// A tiny byte-level BPE vocabulary: the 256 byte characters plus a few merges.
Vocab tiny_bpe_vocab() {
  Vocab v;
  v.model = ModelKind::kBytePairEncoding;
  v.pre_tokenizer = PreTokenizerKind::kGpt2;
  for (const std::string& c : byte_level_chars()) v.tokens.push_back(c);
  for (const char* t : {"el", "hel", "hell", "Ġw", "<|end|>"}) v.tokens.push_back(t);
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types.back() = TokenType::kControl;
  v.eos_id = static_cast<int32_t>(v.tokens.size()) - 1;
  v.merges = {"e l", "l l", "h el", "hel l", "Ġ w"};  // "l l" has no token: never a result
  return v;
}

TEST(TokenizerBpe, MergesByRank) {
  Result<Tokenizer> tok = Tokenizer::from_vocab(tiny_bpe_vocab());
  ASSERT_TRUE(tok) << tok.status().message();
  const auto id = [&](std::string_view t) { return *tok->find_token(t); };
  // "hello": e+l (rank 0) before l+l (rank 1); then h+el, hel+l; "l l" result is no token.
  EXPECT_EQ(tok->encode("hello world", false, false),
            (std::vector<int32_t>{id("hell"), id("o"), id("Ġw"), id("o"), id("r"), id("l"), id("d")}));
  EXPECT_EQ(tok->decode(tok->encode("hello world", false, false)), "hello world");
  EXPECT_EQ(tok->encode("x<|end|>", false, true), (std::vector<int32_t>{id("x"), tok->eos()}));
  EXPECT_TRUE(tok->is_eog(tok->eos()));
}

TEST(TokenizerBpe, FromVocabRejectsBadInput) {
  Vocab v = tiny_bpe_vocab();
  v.merges.push_back("nospace");
  EXPECT_FALSE(Tokenizer::from_vocab(v));
  v = tiny_bpe_vocab();
  v.bos_id = 100000;
  EXPECT_FALSE(Tokenizer::from_vocab(v));
  v = tiny_bpe_vocab();
  v.scores = {1.0f};
  EXPECT_FALSE(Tokenizer::from_vocab(v));
  EXPECT_FALSE(Tokenizer::from_vocab(Vocab{}));
}

TEST(TokenizerSpm, ScoresAndByteFallback) {
  Vocab v;
  v.model = ModelKind::kSentencePiece;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    v.tokens.push_back(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    v.types.push_back(TokenType::kByte);
  }
  for (const char* t : {"\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "hi", "\xE2\x96\x81hi"}) {
    v.tokens.push_back(t);
    v.types.push_back(TokenType::kNormal);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  v.scores[v.tokens.size() - 3] = -1.0f;  // ▁h
  v.scores[v.tokens.size() - 2] = -2.0f;  // hi: lower score, so ▁h merges first
  v.scores[v.tokens.size() - 1] = -0.5f;  // ▁hi
  v.bos_id = 1;
  v.eos_id = 2;
  v.unknown_id = 0;
  v.add_bos = true;
  Result<Tokenizer> tok = Tokenizer::from_vocab(v);
  ASSERT_TRUE(tok) << tok.status().message();
  const auto id = [&](std::string_view t) { return *tok->find_token(t); };
  EXPECT_EQ(tok->encode("hi", true, false), (std::vector<int32_t>{1, id("\xE2\x96\x81hi")}));
  // é has no token: its bytes <0xC3><0xA9>.
  EXPECT_EQ(tok->encode("h\xC3\xA9", false, false),
            (std::vector<int32_t>{id("\xE2\x96\x81h"), 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode(tok->encode("h\xC3\xA9 hi", true, false)), "h\xC3\xA9 hi");
}

// --- Chat templates ---------------------------------------------------------------------

std::vector<ChatMessage> conversation() {
  return {{"system", "Be brief."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "Bye?"}};
}

TEST(ChatTemplate, ChatMlByName) {
  Result<std::string> p = apply_chat_template("chatml", conversation(), true);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(*p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n"
            "<|im_start|>assistant\n");
  Result<std::string> no_prompt = apply_chat_template("ChatML", {{"user", "x"}}, false);
  ASSERT_TRUE(no_prompt);
  EXPECT_EQ(*no_prompt, "<|im_start|>user\nx<|im_end|>\n");
}

// SmolLM2-135M-Instruct's tokenizer.chat_template.
constexpr std::string_view kSmolLm2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
    "}}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplate, SmolLm2SourceAddsItsDefaultSystemMessage) {
  Result<std::string> p = apply_chat_template(kSmolLm2Template, {{"user", "Hi"}}, true);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(*p,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // With a system message of its own, no default one.
  Result<std::string> own = apply_chat_template(kSmolLm2Template, {{"system", "S"}, {"user", "Hi"}}, false);
  ASSERT_TRUE(own);
  EXPECT_EQ(*own, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, Qwen2SourceWithEscapedNewlines) {
  // As a template may spell it: \n escapes inside the Jinja literals.
  const std::string_view source =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
  Result<ChatTemplate> t = parse_chat_template(source);
  ASSERT_TRUE(t) << t.status().message();
  EXPECT_EQ(t->format, ChatFormat::kChatMl);
  EXPECT_EQ(t->default_system, "You are a helpful assistant");
}

TEST(ChatTemplate, Llama3) {
  const std::string_view source =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
  Result<std::string> p = apply_chat_template(source, conversation(), true);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(*p,
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  Result<std::string> by_name = apply_chat_template("llama3", conversation(), true);
  ASSERT_TRUE(by_name);
  EXPECT_EQ(*by_name, *p);
}

TEST(ChatTemplate, Llama2) {
  const std::string_view source =
      "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] "
      "+ '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}"
      "{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}{% endif %}{% endfor %}";
  Result<std::string> p = apply_chat_template(source, conversation(), true);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(*p, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Bye? [/INST]");
}

TEST(ChatTemplate, UnknownTemplateIsAnError) {
  Result<std::string> p = apply_chat_template("{{ messages | tojson }}", conversation(), true);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(p.status().message().find("not recognised"), std::string::npos);
}

TEST(ChatTemplate, PromptTokenizesToControlTokens) {
  std::string skip;
  const std::optional<Tokenizer> tok = load_vocab("qwen2", skip);
  if (!tok) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  Result<std::string> p = apply_chat_template(tok->vocab().chat_template, {{"user", "Hi"}}, true);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_TRUE(p->starts_with("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n")) << *p;
  const std::vector<int32_t> ids = tok->encode(*p, true, true);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151644), 3);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151645), 2);
}

}  // namespace
}  // namespace lutq::gen
