// tokenizer.json (+ tokenizer_config.json, config.json) -> tokenizer.ggml.* metadata for
// byte-level BPE tokenizers, following llama.cpp's convert_hf_to_gguf.py (get_vocab_base,
// gguf.SpecialVocab): tokens by id padded to the model's vocab_size, token types, merges,
// the pre-tokenizer name, special token ids, add_bos/add_eos and the chat template.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>

#include "io/hf_metadata.h"

namespace lutq::io {
namespace {

// Token ids beyond this are refused: no real vocabulary comes near, and the token list is
// allocated up to the largest id.
constexpr uint64_t kMaxTokenId = 16u << 20;

// tokenizer.ggml.token_type values (gen/vocab.h TokenType).
constexpr int64_t kNormal = 1;
constexpr int64_t kControl = 3;
constexpr int64_t kUserDefined = 4;
constexpr int64_t kUnused = 5;

const HfJson* field(const HfJson& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// A token id: a non-negative JSON integer (parsed JSON holds them as unsigned, built JSON may
// hold them as signed).
std::optional<uint64_t> as_id(const HfJson* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer() && v->get<int64_t>() >= 0) return static_cast<uint64_t>(v->get<int64_t>());
  return std::nullopt;
}

std::string type_of(const HfJson* step) {
  const HfJson* t = step == nullptr ? nullptr : field(*step, "type");
  return t != nullptr && t->is_string() ? t->get<std::string>() : "";
}

// The steps of a pre-tokenizer or post-processor: a Sequence's list ("pretokenizers" resp.
// "processors"), or the single step.
std::vector<const HfJson*> steps_of(const HfJson* step) {
  std::vector<const HfJson*> steps;
  if (step == nullptr) return steps;
  if (type_of(step) == "Sequence") {
    for (const char* key : {"pretokenizers", "processors"}) {
      if (const HfJson* list = field(*step, key); list != nullptr && list->is_array()) {
        for (const HfJson& s : *list) steps.push_back(&s);
      }
    }
  } else {
    steps.push_back(step);
  }
  return steps;
}

bool bool_field(const HfJson& obj, const char* key, bool fallback) {
  const HfJson* v = field(obj, key);
  return v != nullptr && v->is_boolean() ? v->get<bool>() : fallback;
}

// A ByteLevel step: use_regex says whether it also applies the GPT-2 split.
bool is_byte_level(const HfJson* step, bool use_regex) {
  return type_of(step) == "ByteLevel" && !bool_field(*step, "add_prefix_space", false) &&
         bool_field(*step, "use_regex", true) == use_regex;
}

// A Split step with one of the known regexes, isolating matches.
std::string split_regex(const HfJson* step) {
  if (type_of(step) != "Split") return "";
  const HfJson* pattern = field(*step, "pattern");
  const HfJson* regex = pattern == nullptr ? nullptr : field(*pattern, "Regex");
  const HfJson* behavior = field(*step, "behavior");
  if (regex == nullptr || !regex->is_string() || behavior == nullptr || *behavior != "Isolated" ||
      bool_field(*step, "invert", false)) {
    return "";
  }
  return regex->get<std::string>();
}

// llama.cpp's tokenizer.ggml.pre name for the pre-tokenizer, or "" when it is not one we know.
std::string pre_tokenizer_name(const HfJson* pre, bool ignore_merges) {
  const std::vector<const HfJson*> s = steps_of(pre);
  if (s.size() == 1 && is_byte_level(s[0], true)) return "gpt-2";
  if (s.size() == 2 && type_of(s[0]) == "Digits" && bool_field(*s[0], "individual_digits", false) &&
      is_byte_level(s[1], true)) {
    return "smollm";
  }
  if (s.size() == 2 && is_byte_level(s[1], false)) {
    const std::string regex = split_regex(s[0]);
    if (regex == kHfGpt2Regex) return "gpt-2";
    // Llama 3 sets ignore_merges (llama.cpp "llama-bpe"); the same split without it is "smaug-bpe".
    if (regex == kHfLlama3Regex) return ignore_merges ? "llama-bpe" : "smaug-bpe";
    if (regex == kHfQwen2Regex) return "qwen2";
  }
  return "";
}

// A special token's text from tokenizer_config.json: "text" or {"content": "text", ...}.
std::optional<std::string> token_text(const HfJson* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (const HfJson* c = field(*v, "content"); c != nullptr && c->is_string()) return c->get<std::string>();
  return std::nullopt;
}

}  // namespace

Status hf_tokenizer_to_gguf(const HfJson& tokenizer, const HfJson& tokenizer_config, const HfJson& config,
                            int64_t vocab_size, const std::string& chat_template, const std::string& where,
                            MetadataList& out) {
  const std::string tj = where + "/tokenizer.json";
  const auto bad = [&](const std::string& msg) { return Status::invalid(tj + ": " + msg); };
  if (!tokenizer.is_object()) return bad("not a JSON object");
  const HfJson* model = field(tokenizer, "model");
  if (model == nullptr || !model->is_object()) return bad("missing object 'model'");
  const std::string kind = type_of(model);
  if (kind != "BPE") {
    return Status::unsupported(tj + ": model type '" + kind + "' is not supported (only byte-level BPE)");
  }
  if (bool_field(*model, "byte_fallback", false)) {
    return Status::unsupported(tj + ": BPE with byte_fallback (SentencePiece-style, e.g. Llama 2 / Mistral) is not "
                               "supported yet; only byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM)");
  }
  if (const HfJson* norm = field(tokenizer, "normalizer"); norm != nullptr && type_of(norm) != "NFC") {
    // llama.cpp ignores NFC too (byte-level vocabularies are trained on NFC text).
    return Status::unsupported(tj + ": normalizer '" + type_of(norm) + "' is not supported (only none or NFC)");
  }
  const bool ignore_merges = bool_field(*model, "ignore_merges", false);
  const std::string pre = pre_tokenizer_name(field(tokenizer, "pre_tokenizer"), ignore_merges);
  if (pre.empty()) {
    const HfJson* p = field(tokenizer, "pre_tokenizer");
    std::string shown = p == nullptr ? "null" : p->dump();
    if (shown.size() > 300) shown = shown.substr(0, 300) + "...";
    return Status::unsupported(tj + ": unknown pre_tokenizer " + shown +
                               " (supported: ByteLevel (GPT-2), Digits + ByteLevel (SmolLM), Split with the GPT-2, "
                               "Llama-3 or Qwen2 regex + ByteLevel)");
  }

  // Tokens by id: the BPE vocab, then added tokens (which win where both name an id).
  const HfJson* vocab = field(*model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) return bad("model.vocab is not an object");
  std::map<uint64_t, std::pair<std::string, int64_t>> by_id;  // id -> (text, type)
  std::map<std::string, uint64_t> id_of;
  for (const auto& [text, id] : vocab->items()) {
    const std::optional<uint64_t> i = as_id(&id);
    if (!i || *i > kMaxTokenId) return bad("model.vocab['" + text + "'] = " + id.dump() + " is not a token id");
    if (!by_id.emplace(*i, std::pair{text, kNormal}).second) {
      return bad("model.vocab gives id " + id.dump() + " to two tokens");
    }
    id_of[text] = *i;
  }
  if (const HfJson* added = field(tokenizer, "added_tokens")) {
    if (!added->is_array()) return bad("added_tokens is not an array");
    for (const HfJson& t : *added) {
      const std::optional<uint64_t> id = as_id(field(t, "id"));
      const HfJson* content = field(t, "content");
      if (!id || *id > kMaxTokenId || content == nullptr || !content->is_string()) {
        return bad("added_tokens entry " + t.dump() + " needs an integer 'id' and a string 'content'");
      }
      const int64_t type = bool_field(t, "special", false) ? kControl : kUserDefined;
      by_id[*id] = {content->get<std::string>(), type};
      id_of[content->get<std::string>()] = *id;
    }
  }
  if (by_id.empty()) return bad("the vocabulary is empty");
  const uint64_t n_used = by_id.rbegin()->first + 1;
  if (vocab_size > 0 && n_used > static_cast<uint64_t>(vocab_size)) {
    return bad("token id " + std::to_string(n_used - 1) + " does not fit config.json vocab_size " +
               std::to_string(vocab_size));
  }
  const uint64_t n = std::max<uint64_t>(n_used, static_cast<uint64_t>(std::max<int64_t>(vocab_size, 0)));
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  tokens.reserve(n);
  types.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(kUnused);
    } else {
      tokens.push_back(it->second.first);
      types.push_back(it->second.second);
    }
  }

  // Merges: "left right" strings or ["left", "right"] pairs.
  std::vector<std::string> merges;
  if (const HfJson* m = field(*model, "merges")) {
    if (!m->is_array()) return bad("model.merges is not an array");
    merges.reserve(m->size());
    for (const HfJson& e : *m) {
      if (e.is_string()) {
        merges.push_back(e.get<std::string>());
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.push_back(e[0].get<std::string>() + " " + e[1].get<std::string>());
      } else {
        return bad("model.merges entry " + e.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  }

  out.emplace_back("tokenizer.ggml.model", GgufValue::make_string("gpt2"));
  out.emplace_back("tokenizer.ggml.pre", GgufValue::make_string(pre));
  const size_t tokens_at = out.size();
  out.emplace_back("tokenizer.ggml.tokens", GgufValue::make_string_array(std::move(tokens)));
  const auto text_of = [&](uint64_t id) { return out[tokens_at].second.strings[id]; };
  out.emplace_back("tokenizer.ggml.token_type", GgufValue::make_int_array(GgufValueType::INT32, types));
  out.emplace_back("tokenizer.ggml.merges", GgufValue::make_string_array(std::move(merges)));

  // Special ids: tokenizer_config.json's "<kind>_token" text, else config.json "<kind>_token_id".
  const auto lookup = [&](const std::string& text) -> std::optional<uint64_t> {
    const auto it = id_of.find(text);
    return it == id_of.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  };
  std::optional<std::string> bos_text;
  std::optional<std::string> eos_text;
  for (const auto& [hf, gguf] : {std::pair<std::string, std::string>{"bos", "bos"},
                                 {"eos", "eos"},
                                 {"unk", "unknown"},
                                 {"pad", "padding"}}) {
    std::optional<uint64_t> id;
    std::optional<std::string> text = token_text(field(tokenizer_config, (hf + "_token").c_str()));
    if (!text && hf == "unk") text = token_text(field(*model, "unk_token"));
    if (text) id = lookup(*text);
    if (!id) {
      const HfJson* v = field(config, (hf + "_token_id").c_str());
      if (v != nullptr && v->is_array() && !v->empty()) v = &(*v)[0];  // e.g. several eos ids: the first
      if (const std::optional<uint64_t> i = as_id(v); i && *i < n) id = i;
    }
    if (!id) continue;
    if (hf == "bos") bos_text = text_of(*id);
    if (hf == "eos") eos_text = text_of(*id);
    out.emplace_back("tokenizer.ggml." + gguf + "_token_id",
                     GgufValue::make_uint(GgufValueType::UINT32, *id));
  }

  // add_bos/add_eos: tokenizer_config.json says so, else the post-processor's template shows it.
  bool add_bos = false;
  bool add_eos = false;
  for (const HfJson* step : steps_of(field(tokenizer, "post_processor"))) {
    if (type_of(step) != "TemplateProcessing") continue;
    const HfJson* single = field(*step, "single");
    if (single == nullptr || !single->is_array() || single->empty()) continue;
    const auto special = [](const HfJson& e) -> std::string {
      const HfJson* s = field(e, "SpecialToken");
      const HfJson* id = s == nullptr ? nullptr : field(*s, "id");
      return id != nullptr && id->is_string() ? id->get<std::string>() : "";
    };
    add_bos = bos_text && special(single->front()) == *bos_text;
    add_eos = eos_text && special(single->back()) == *eos_text;
  }
  add_bos = bool_field(tokenizer_config, "add_bos_token", add_bos);
  add_eos = bool_field(tokenizer_config, "add_eos_token", add_eos);
  out.emplace_back("tokenizer.ggml.add_bos_token", GgufValue::make_bool(add_bos));
  out.emplace_back("tokenizer.ggml.add_eos_token", GgufValue::make_bool(add_eos));

  // Chat template: chat_template.jinja, else tokenizer_config's string or its "default" entry.
  std::string tmpl = chat_template;
  if (const HfJson* t = field(tokenizer_config, "chat_template"); tmpl.empty() && t != nullptr) {
    if (t->is_string()) {
      tmpl = t->get<std::string>();
    } else if (t->is_array()) {
      for (const HfJson& e : *t) {
        const HfJson* name = field(e, "name");
        const HfJson* body = field(e, "template");
        if (name != nullptr && *name == "default" && body != nullptr && body->is_string()) tmpl = body->get<std::string>();
      }
    }
  }
  if (!tmpl.empty()) out.emplace_back("tokenizer.chat_template", GgufValue::make_string(std::move(tmpl)));
  return Status::ok();
}

}  // namespace lutq::io
