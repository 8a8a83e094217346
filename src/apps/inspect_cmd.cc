// `lutq inspect FILE`: what a model file holds — format, model configuration, tokenizer, the
// storage of every linear layer (BCQ configuration, quantizer, recorded error), and optionally
// all metadata and tensors.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "io/checkpoint.h"
#include "lutqfile/lutq_file.h"
#include "lutqfile/qmoe_entry.h"
#include "model/config.h"

namespace lutq::apps {
namespace {

// A weight's role for grouping: "blk.3.ffn_up.weight" -> "ffn_up.weight", and an expert's own
// matrix "blk.3.ffn_up_exps.5.weight" -> "ffn_up_exps.weight" (all experts together).
std::string weight_role(const std::string& name) {
  std::string role = name.starts_with("blk.") ? name.substr(name.find('.', 4) + 1) : name;
  const size_t exps = role.find("_exps.");
  if (exps == std::string::npos) return role;
  const size_t from = exps + 6;
  size_t to = from;
  while (to < role.size() && role[to] >= '0' && role[to] <= '9') ++to;
  if (to > from && to < role.size() && role[to] == '.') role.erase(from, to - from + 1);
  return role;
}

struct InspectArgs {
  std::string path;
  bool metadata = false;
  bool tensors = false;
};

std::string value_text(const io::GgufValue& v) {
  if (v.type == io::GgufValueType::STRING) {
    std::string s = v.str.size() > 80 ? v.str.substr(0, 77) + "..." : v.str;
    for (char& ch : s) {
      if (ch == '\n') ch = ' ';
    }
    return "\"" + s + "\"";
  }
  if (v.is_array()) return "[" + std::to_string(v.count) + " x " + v.type_description().substr(9) + "]";
  if (v.type == io::GgufValueType::BOOL) return v.u64 ? "true" : "false";
  if (v.type == io::GgufValueType::FLOAT32 || v.type == io::GgufValueType::FLOAT64) return std::to_string(v.f64);
  if (io::gguf_is_signed(v.type)) return std::to_string(v.i64);
  return std::to_string(v.u64);
}

std::string dims_text(const std::vector<int64_t>& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s;
}

int run(const InspectArgs& a) {
  Result<std::unique_ptr<io::Checkpoint>> opened = io::open_checkpoint(a.path);
  if (!opened) return report_error(opened.status(), kExitFailure);
  const io::Checkpoint& ck = **opened;
  Result<bool> lutq_file = lutqfile::is_lutq_file(ck);
  if (!lutq_file) return report_error(lutq_file.status(), kExitFailure);
  std::printf("file:       %s\n", ck.path().c_str());
  std::printf("format:     %s%s\n", ck.format_name(),
              *lutq_file ? (" (lutq model file, version " + std::to_string(*ck.get_int(lutqfile::kVersionKey)) + ")").c_str()
                         : "");
  if (ck.has("lutq.source")) std::printf("source:     %s\n", ck.get_string("lutq.source")->c_str());
  Result<model::ModelConfig> config = model::ModelConfig::from_checkpoint(ck);
  if (config) {
    std::printf("model:      %s\n", config->summary().c_str());
  } else {
    std::printf("model:      not loadable: %s\n", config.status().message().c_str());
  }
  if (Result<std::string> tm = ck.get_string("tokenizer.ggml.model")) {
    const io::GgufValue* toks = ck.find("tokenizer.ggml.tokens");
    std::printf("tokenizer:  %s%s, %llu tokens%s\n", tm->c_str(),
                ck.has("tokenizer.ggml.pre") ? (" (" + *ck.get_string("tokenizer.ggml.pre") + ")").c_str() : "",
                static_cast<unsigned long long>(toks ? toks->count : 0),
                ck.has("tokenizer.chat_template") ? ", chat template" : ", no chat template");
  }

  // Storage of the weights: BCQ matrices and dense tensors, grouped by form.
  std::map<std::string, std::pair<int, int64_t>> forms;  // form -> (count, bytes)
  int64_t total_bytes = 0;
  for (const io::TensorInfo& t : ck.tensors()) {
    total_bytes += static_cast<int64_t>(t.size_bytes);
    if (t.name.find(".bcq_") != std::string::npos) continue;
    if (const size_t q = t.name.find(".qmoe_"); q != std::string::npos) {  // a QMoE matrix: its three tensors
      auto& f = forms[weight_role(t.name.substr(0, q)) + ": qmoe ternary"];
      f.first += t.name.ends_with(".qmoe_codes") ? 1 : 0;
      f.second += static_cast<int64_t>(t.size_bytes);
      continue;
    }
    auto& f = forms[weight_role(t.name) + ": " + io::ggml_type_name(t.type)];
    ++f.first;
    f.second += static_cast<int64_t>(t.size_bytes);
  }
  for (const std::string& key : ck.keys()) {
    if (!key.starts_with(lutqfile::kBcqKeyPrefix) || key.ends_with(".method") || key.ends_with(".rel_error") ||
        key.ends_with(".scale_bits") || key.ends_with(".uniform")) {
      continue;
    }
    const std::string name = key.substr(lutqfile::kBcqKeyPrefix.size());
    Result<std::optional<lutqfile::BcqEntry>> e = lutqfile::find_bcq(ck, name);
    if (!e) return report_error(e.status(), kExitFailure);
    const lutqfile::BcqEntry& b = **e;
    const std::string role = weight_role(name);
    // The stored form's bytes: the entry's tensors (bits and fp16 or compressed scales).
    int64_t stored = 0;
    for (const char* suffix : {".bcq_bits", ".bcq_alpha", ".bcq_offset", ".bcq_alpha_code", ".bcq_alpha_super",
                               ".bcq_offset_code", ".bcq_offset_range"}) {
      if (const io::TensorInfo* t = ck.find_tensor(name + suffix)) stored += static_cast<int64_t>(t->size_bytes);
    }
    const double bpw = 8.0 * static_cast<double>(stored) / (static_cast<double>(b.n) * static_cast<double>(b.k));
    char scales[24] = "";
    if (b.scale_bits > 0) std::snprintf(scales, sizeof scales, " scales %d-bit", b.scale_bits);
    if (b.uniform) std::snprintf(scales + std::strlen(scales), sizeof scales - std::strlen(scales), " uniform");
    char form[192];
    std::snprintf(form, sizeof form, "%s: bcq q=%d g=%lld %s%s%s %s (%.3f bpw)", role.c_str(), b.cfg.q,
                  static_cast<long long>(b.cfg.g), format::orientation_name(b.cfg.orientation),
                  b.cfg.has_offset ? " offset" : "", scales, b.method.c_str(), bpw);
    auto& f = forms[form];
    ++f.first;
    f.second += stored;
    if (a.tensors) {
      std::printf("  bcq %-30s %lldx%lld q=%d g=%lld%s %s %.3f bpw rel.err %.4f\n", name.c_str(),
                  static_cast<long long>(b.n), static_cast<long long>(b.k), b.cfg.q, static_cast<long long>(b.cfg.g),
                  scales, b.method.c_str(), bpw, b.rel_error);
    }
  }
  std::printf("weights:    %zu tensors, %.1f MiB\n", ck.tensors().size(), static_cast<double>(total_bytes) / 1048576.0);
  for (const auto& [form, f] : forms) {
    std::printf("  %-56s x%-4d %9.2f MiB\n", form.c_str(), f.first, static_cast<double>(f.second) / 1048576.0);
  }
  if (a.tensors) {
    for (const io::TensorInfo& t : ck.tensors()) {
      std::printf("  tensor %-40s %-6s %s\n", t.name.c_str(), io::ggml_type_name(t.type), dims_text(t.dims).c_str());
    }
  }
  if (a.metadata) {
    for (const std::string& key : ck.keys()) {
      if (key.starts_with(lutqfile::kBcqKeyPrefix) || key.starts_with(lutqfile::kQmoeKeyPrefix)) continue;
      std::printf("  %-44s %s\n", key.c_str(), value_text(*ck.find(key)).c_str());
    }
  }
  return config ? 0 : kExitFailure;
}

}  // namespace

Subcommand register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand("inspect", "Show what a model file (lutq or GGUF) holds: format, model, tokenizer, weight storage.");
  sub->add_option("FILE", args->path, "Model file")->required();
  sub->add_flag("--metadata", args->metadata, "List every metadata key (lutq.bcq.* and lutq.qmoe.* per-matrix keys excepted)");
  sub->add_flag("--tensors", args->tensors, "List every tensor and BCQ matrix");
  return Subcommand{sub, [args] { return run(*args); }};
}

}  // namespace lutq::apps
