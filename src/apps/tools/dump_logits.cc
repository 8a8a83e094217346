// lutq_dump_logits: a test-only driver for scripts/check_logits.py and rough decode timings.
//
//   lutq_dump_logits MODEL.gguf (--text FILE | --tokens FILE) [--max-tokens N] [--out LOGITS.f32]
//                    [--ids-out IDS.txt] [--threads N] [--batch N] [--quant Q,G[,offset]] [--isa NAME]
//                    [--precision exact|fast] [--decode N]
//
// Tokenizes the text with the GGUF's tokenizer (no BOS/EOS added, special tokens not parsed) or
// reads whitespace-separated token ids, keeps the first --max-tokens, runs them through the model
// (batched prefill in chunks of --batch tokens, default all at once) and writes every position's
// logits as raw little-endian float32 [tokens][vocab] to --out, and the ids to --ids-out.
// --quant Q,G[,offset] quantizes every block linear layer (alternating BCQ, per-OC) for the
// --isa backend (default: best available) at --precision (default fast); the default is dense
// fp32. --decode N then times N single-token decode steps (greedy, continuing after the prompt)
// and prints tokens/s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "gen/tokenizer.h"
#include "io/gguf_file.h"
#include "kernels/linear.h"
#include "model/model.h"

namespace {

using lutq::Result;
using lutq::Status;

struct Args {
  std::string model;
  std::string text_file;
  std::string tokens_file;
  std::string out;
  std::string ids_out;
  int64_t max_tokens = 256;
  int threads = 1;
  int64_t batch = 0;
  int quant_q = 0;
  int64_t quant_g = 128;
  bool quant_offset = false;
  std::string isa;
  std::string precision = "fast";
  int64_t decode = 0;
};

int usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: lutq_dump_logits MODEL.gguf (--text FILE | --tokens FILE) [--max-tokens N] "
               "[--out F] [--ids-out F] [--threads N] [--batch N] [--quant Q,G[,offset]] [--isa NAME] "
               "[--precision exact|fast] [--decode N]\n",
               msg);
  return 2;
}

std::optional<Args> parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto next = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    std::optional<std::string> v;
    if (arg.rfind("--", 0) == 0 && !(v = next())) return std::nullopt;
    if (arg == "--text") a.text_file = *v;
    else if (arg == "--tokens") a.tokens_file = *v;
    else if (arg == "--out") a.out = *v;
    else if (arg == "--ids-out") a.ids_out = *v;
    else if (arg == "--max-tokens") a.max_tokens = std::atoll(v->c_str());
    else if (arg == "--threads") a.threads = std::atoi(v->c_str());
    else if (arg == "--batch") a.batch = std::atoll(v->c_str());
    else if (arg == "--isa") a.isa = *v;
    else if (arg == "--precision") a.precision = *v;
    else if (arg == "--decode") a.decode = std::atoll(v->c_str());
    else if (arg == "--quant") {
      long long g = 0;
      char extra[16] = {};
      const int got = std::sscanf(v->c_str(), "%d,%lld,%15s", &a.quant_q, &g, extra);
      if (got < 2 || (got == 3 && std::string(extra) != "offset")) return std::nullopt;
      a.quant_g = g;
      a.quant_offset = got == 3;
    } else if (arg.rfind("--", 0) == 0) return std::nullopt;
    else if (a.model.empty()) a.model = arg;
    else return std::nullopt;
  }
  if (a.model.empty() || a.text_file.empty() == a.tokens_file.empty() || a.max_tokens < 1) return std::nullopt;
  return a;
}

Result<std::vector<int32_t>> read_ids(const Args& a, const lutq::io::GgufFile& gguf) {
  std::ifstream in(a.text_file.empty() ? a.tokens_file : a.text_file, std::ios::binary);
  if (!in) return Status::invalid("cannot read " + (a.text_file.empty() ? a.tokens_file : a.text_file));
  std::vector<int32_t> ids;
  if (!a.tokens_file.empty()) {
    long long id = 0;
    while (in >> id) ids.push_back(static_cast<int32_t>(id));
  } else {
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Result<lutq::gen::Tokenizer> tok = lutq::gen::Tokenizer::from_checkpoint(gguf);
    if (!tok) return tok.status();
    ids = tok->encode(text, /*add_special=*/false, /*parse_special=*/false);
  }
  if (static_cast<int64_t>(ids.size()) > a.max_tokens) ids.resize(static_cast<size_t>(a.max_tokens));
  if (ids.empty()) return Status::invalid("no tokens");
  return ids;
}

int run(const Args& a) {
  Result<lutq::io::GgufFile> gguf = lutq::io::GgufFile::open(a.model);
  if (!gguf) return usage(gguf.status().message().c_str());
  Result<std::vector<int32_t>> ids = read_ids(a, *gguf);
  if (!ids) return usage(ids.status().message().c_str());

  lutq::ThreadPool pool(a.threads);
  lutq::model::LoadOptions opt;
  if (a.quant_q > 0) {
    lutq::quant::QuantOptions qo;
    qo.cfg.q = a.quant_q;
    qo.cfg.g = a.quant_g;
    qo.cfg.has_offset = a.quant_offset;
    std::optional<lutq::kernels::Isa> want;
    if (!a.isa.empty()) {
      Result<lutq::kernels::Isa> isa = lutq::kernels::parse_isa(a.isa);
      if (!isa) return usage(isa.status().message().c_str());
      want = *isa;
    }
    Result<lutq::kernels::Isa> isa = lutq::kernels::select_isa(lutq::detect_cpu(), want);
    if (!isa) return usage(isa.status().message().c_str());
    Result<lutq::kernels::Precision> prec = lutq::kernels::parse_precision(a.precision);
    if (!prec) return usage(prec.status().message().c_str());
    opt.linear = lutq::model::LinearSpec::quantized(qo, *isa, *prec);
  }
  Result<lutq::model::Model> model = lutq::model::Model::load(*gguf, opt, pool);
  if (!model) return usage(model.status().message().c_str());
  std::fprintf(stderr, "%s", model->describe().c_str());

  const auto n = static_cast<int64_t>(ids->size());
  const int64_t vocab = model->config().n_vocab;
  Result<std::unique_ptr<lutq::model::Memory>> memory = model->make_memory(n + a.decode);
  if (!memory) return usage(memory.status().message().c_str());
  lutq::model::Memory& cache = **memory;
  std::vector<float> logits(static_cast<size_t>(n * vocab));
  const int64_t batch = a.batch > 0 ? a.batch : n;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t p = 0; p < n; p += batch) {
    const int64_t len = std::min(batch, n - p);
    Status s = model->forward(std::span<const int32_t>(ids->data() + p, static_cast<size_t>(len)), p, cache,
                              logits.data() + p * vocab, pool, lutq::model::LogitsMode::kAll);
    if (!s) return usage(s.message().c_str());
  }
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s, batch %lld, %d threads)\n",
               static_cast<long long>(n), prefill_s, static_cast<double>(n) / prefill_s,
               static_cast<long long>(batch), a.threads);

  if (!a.out.empty()) {
    std::ofstream out(a.out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
    if (!out) return usage(("cannot write " + a.out).c_str());
  }
  if (!a.ids_out.empty()) {
    std::ofstream out(a.ids_out);
    for (int32_t id : *ids) out << id << "\n";
    if (!out) return usage(("cannot write " + a.ids_out).c_str());
  }

  if (a.decode > 0) {
    std::vector<float> last(logits.end() - vocab, logits.end());
    const auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < a.decode; ++i) {
      const auto next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      Status s = model->forward(std::span<const int32_t>(&next, 1), n + i, cache, last.data(), pool);
      if (!s) return usage(s.message().c_str());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("decode: %lld tokens in %.3f s = %.2f tokens/s (%d threads, %.1f MiB weights/token)\n",
                static_cast<long long>(a.decode), secs, static_cast<double>(a.decode) / secs, a.threads,
                static_cast<double>(model->weight_bytes()) / (1024.0 * 1024.0));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Args> args = parse(argc, argv);
  if (!args) return usage("bad arguments");
  return run(*args);
}
