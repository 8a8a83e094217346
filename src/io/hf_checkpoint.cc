// HfCheckpoint: finds the files of a Hugging Face checkpoint, maps the safetensors shards, and
// presents their tensors and the translated config/tokenizer metadata in GGUF terms.
#include "io/hf_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace lutq::io {
namespace {

namespace fs = std::filesystem;

// config/tokenizer JSON files larger than this are refused (tokenizer.json of a 256k vocabulary
// is ~20 MB).
constexpr uintmax_t kMaxJsonFileBytes = uintmax_t{512} << 20;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

Result<std::string> read_text(const fs::path& p) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(p, ec);
  if (ec) return Status(StatusCode::kIoError, p.string() + ": cannot read: " + ec.message());
  if (size > kMaxJsonFileBytes) {
    return Status::invalid(p.string() + ": " + std::to_string(size) + " bytes is larger than the limit of " +
                           std::to_string(kMaxJsonFileBytes));
  }
  std::ifstream in(p, std::ios::binary);
  if (!in) return Status(StatusCode::kIoError, p.string() + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return Status(StatusCode::kIoError, p.string() + ": read error");
  return ss.str();
}

Result<HfJson> read_json(const fs::path& p) {
  Result<std::string> text = read_text(p);
  if (!text) return text.status();
  try {
    return HfJson::parse(*text);
  } catch (const std::exception& e) {
    return Status(StatusCode::kCorrupt, p.string() + ": bad JSON: " + e.what());
  }
}

// An optional JSON file: null JSON when absent.
Result<HfJson> read_optional_json(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return HfJson();
  return read_json(p);
}

// Row permutation of llama.cpp's permute(): within each head of `rows / heads` rows, row
// half*(hd/2)+i (rotate-half pairs (i, i+hd/2)) moves to 2i+half (adjacent pairs).
std::vector<float> permute_rows(const std::vector<float>& w, int64_t heads, int64_t row_len) {
  const auto rows = static_cast<int64_t>(w.size()) / row_len;
  const int64_t hd = rows / heads;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const float* src = w.data() + (h * hd + half * (hd / 2) + i) * row_len;
        std::copy(src, src + row_len, out.data() + (h * hd + 2 * i + half) * row_len);
      }
    }
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::string hf_to_gguf_tensor_name(std::string_view n) {
  const auto strip = [&n](std::string_view prefix) {
    if (n.substr(0, prefix.size()) != prefix) return false;
    n.remove_prefix(prefix.size());
    return true;
  };
  std::string suffix;  // ".weight" or ".bias"
  if (ends_with(n, ".weight")) {
    suffix = ".weight";
  } else if (ends_with(n, ".bias")) {
    suffix = ".bias";
  } else {
    return "";
  }
  n.remove_suffix(suffix.size());
  if (n == "model.embed_tokens") return "token_embd" + suffix;
  if (n == "model.norm") return "output_norm" + suffix;
  if (n == "lm_head") return "output" + suffix;
  if (!strip("model.layers.")) return "";
  const size_t dot = n.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 9) return "";
  const std::string_view layer = n.substr(0, dot);
  if (!std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; })) return "";
  if (layer.size() > 1 && layer[0] == '0') return "";
  const std::string_view rest = n.substr(dot + 1);
  static constexpr std::pair<std::string_view, std::string_view> kParts[] = {
      {"input_layernorm", "attn_norm"},  {"self_attn.q_proj", "attn_q"},  {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},    {"self_attn.o_proj", "attn_output"},
      {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  for (const auto& [hf, gguf] : kParts) {
    if (rest == hf) return "blk." + std::string(layer) + "." + std::string(gguf) + suffix;
  }
  return "";
}

Result<HfCheckpoint> HfCheckpoint::open(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  fs::path folder;
  fs::path index_path;
  std::vector<std::string> shard_paths;
  if (fs::is_directory(p, ec)) {
    folder = p;
    if (fs::exists(p / "model.safetensors.index.json", ec)) {
      index_path = p / "model.safetensors.index.json";
    } else if (fs::exists(p / "model.safetensors", ec)) {
      shard_paths.push_back((p / "model.safetensors").string());
    } else {
      return Status::invalid(path + ": folder holds neither model.safetensors nor model.safetensors.index.json");
    }
  } else if (ends_with(path, ".index.json")) {
    index_path = p;
    folder = p.parent_path();
  } else if (ends_with(path, ".safetensors")) {
    shard_paths.push_back(path);
    folder = p.parent_path();
  } else {
    return Status::invalid(path + ": not a Hugging Face checkpoint (expected a folder, a .safetensors file or a "
                                  ".safetensors.index.json file)");
  }
  if (folder.empty()) folder = ".";

  HfJson index;
  const HfJson* weight_map = nullptr;
  if (!index_path.empty()) {
    Result<HfJson> j = read_json(index_path);
    if (!j) return j.status();
    index = std::move(*j);
    const auto wm = index.is_object() ? index.find("weight_map") : index.end();
    if (wm == index.end() || !wm->is_object()) {
      return Status::invalid(index_path.string() + ": missing object 'weight_map'");
    }
    weight_map = &*wm;
    for (const auto& [tensor, file] : weight_map->items()) {
      if (!file.is_string()) {
        return Status::invalid(index_path.string() + ": weight_map['" + tensor + "'] is not a file name");
      }
      const std::string f = file.get<std::string>();
      // Shards live next to the index: plain names only, never a path out of the folder.
      if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos ||
          f.find('\\') != std::string::npos || f.find('\0') != std::string::npos) {
        return Status::invalid(index_path.string() + ": weight_map['" + tensor + "'] = '" + f +
                               "' is not a plain file name in the checkpoint folder");
      }
      const std::string full = (folder / f).string();
      if (std::find(shard_paths.begin(), shard_paths.end(), full) == shard_paths.end()) shard_paths.push_back(full);
    }
    if (shard_paths.empty()) return Status::invalid(index_path.string() + ": weight_map names no tensors");
  }

  Result<HfJson> config = read_json(folder / "config.json");
  if (!config) {
    if (!fs::exists(folder / "config.json", ec)) {
      return Status::invalid((folder / "config.json").string() +
                             ": not found (a Hugging Face checkpoint needs config.json beside its weights)");
    }
    return config.status();
  }
  std::string name = fs::absolute(folder, ec).lexically_normal().filename().string();
  if (const auto it = config->is_object() ? config->find("_name_or_path") : config->end();
      it != config->end() && it->is_string() && !it->get<std::string>().empty()) {
    name = fs::path(it->get<std::string>()).filename().string();
  }

  HfCheckpoint ck;
  ck.path_ = path;
  Result<HfModelInfo> info = hf_config_to_gguf(*config, (folder / "config.json").string(), name, ck.kv_);
  if (!info) return info.status();
  if (Status s = ck.load_weights(shard_paths, weight_map, *info); !s) return s;

  if (fs::exists(folder / "tokenizer.json", ec)) {
    Result<HfJson> tok = read_json(folder / "tokenizer.json");
    if (!tok) return tok.status();
    Result<HfJson> tok_config = read_optional_json(folder / "tokenizer_config.json");
    if (!tok_config) return tok_config.status();
    std::string chat_template;
    if (fs::exists(folder / "chat_template.jinja", ec)) {
      Result<std::string> t = read_text(folder / "chat_template.jinja");
      if (!t) return t.status();
      chat_template = std::move(*t);
    }
    int64_t vocab_size = info->vocab_size;
    if (vocab_size == 0) {
      if (const TensorInfo* e = ck.find_tensor("token_embd.weight"); e != nullptr && e->dims.size() == 2) {
        vocab_size = e->dims[1];
      }
    }
    if (Status s = hf_tokenizer_to_gguf(*tok, *tok_config, *config, vocab_size, chat_template, folder.string(), ck.kv_);
        !s) {
      return s;
    }
  }
  for (size_t i = 0; i < ck.kv_.size(); ++i) {
    if (!ck.kv_index_.emplace(ck.kv_[i].first, i).second) {
      return Status::invalid(path + ": metadata key '" + ck.kv_[i].first + "' produced twice");
    }
  }
  return ck;
}

Status HfCheckpoint::load_weights(const std::vector<std::string>& shard_paths, const HfJson* weight_map,
                                  const HfModelInfo& info) {
  for (const std::string& sp : shard_paths) {
    Result<SafetensorsFile> f = SafetensorsFile::open(sp);
    if (!f) return f.status();
    shards_.push_back(std::move(*f));
  }
  if (weight_map != nullptr) {
    for (const auto& [tensor, file] : weight_map->items()) {
      const std::string full = (fs::path(shard_paths.front()).parent_path() / file.get<std::string>()).string();
      const auto it = std::find(shard_paths.begin(), shard_paths.end(), full);
      if (shards_[static_cast<size_t>(it - shard_paths.begin())].find(tensor) == nullptr) {
        return Status::invalid(full + ": has no tensor '" + tensor + "' although the index names this file for it");
      }
    }
  }
  for (size_t s = 0; s < shards_.size(); ++s) {
    const SafetensorsFile& shard = shards_[s];
    for (size_t i = 0; i < shard.tensors().size(); ++i) {
      const SafetensorsTensor& t = shard.tensors()[i];
      const std::string what = shard.path() + ": tensor '" + t.name + "'";
      std::string gguf = hf_to_gguf_tensor_name(t.name);
      if (gguf == "output.weight" && info.tied_embeddings) continue;  // tied: token_embd serves
      const bool ggml_shape = !t.shape.empty() && t.shape.size() <= 4 &&
                              std::none_of(t.shape.begin(), t.shape.end(), [](int64_t d) { return d == 0; });
      const std::optional<GgmlType> type = safetensors_dtype_to_ggml(t.dtype);
      if (!gguf.empty()) {
        if (t.dtype != SafetensorsDtype::kF32 && t.dtype != SafetensorsDtype::kF16 &&
            t.dtype != SafetensorsDtype::kBF16) {
          return Status::unsupported(what + " has unsupported dtype " + safetensors_dtype_name(t.dtype) +
                                     " (supported: F32, F16, BF16)");
        }
        if (!ggml_shape) return Status::invalid(what + " has shape " + shape_string(t.shape) + ", not a weight shape");
      } else if (!type || !ggml_shape) {
        continue;  // not a Llama weight and not representable as a ggml tensor: ignored
      } else {
        gguf = t.name;
      }
      TensorInfo ti;
      ti.name = gguf;
      ti.dims.assign(t.shape.rbegin(), t.shape.rend());
      ti.type = *type;
      ti.offset = shard.data_offset() + t.begin;
      ti.size_bytes = t.size_bytes();
      Source src;
      src.shard = static_cast<int64_t>(s);
      src.tensor = i;
      const bool is_q = ends_with(gguf, ".attn_q.weight");
      if (is_q || ends_with(gguf, ".attn_k.weight")) {
        src.permute_heads = is_q ? info.n_head : info.n_head_kv;
        const int64_t rows = ti.dims.size() == 2 ? ti.dims[1] : 0;
        if (rows == 0 || rows % (2 * src.permute_heads) != 0) {
          return Status::invalid(what + " has shape " + shape_string(t.shape) + ": its " + std::to_string(rows) +
                                 " rows do not split into " + std::to_string(src.permute_heads) +
                                 " heads of even size (config.json num_attention_heads / num_key_value_heads)");
        }
      }
      if (tensor_index_.count(ti.name) != 0) {
        return Status::invalid(what + ": a tensor named '" + ti.name + "' (GGUF name) was already loaded from " +
                               shards_[static_cast<size_t>(sources_[tensor_index_.find(ti.name)->second].shard)].path());
      }
      add_tensor(std::move(ti), std::move(src));
    }
  }
  if (!info.rope_freqs.empty()) {
    TensorInfo ti;
    ti.name = "rope_freqs.weight";
    ti.dims = {static_cast<int64_t>(info.rope_freqs.size())};
    ti.type = GgmlType::F32;
    ti.size_bytes = info.rope_freqs.size() * sizeof(float);
    Source src;
    src.owned = info.rope_freqs;
    add_tensor(std::move(ti), std::move(src));
  }
  return Status::ok();
}

void HfCheckpoint::add_tensor(TensorInfo info, Source source) {
  tensor_index_.emplace(info.name, tensors_.size());
  tensors_.push_back(std::move(info));
  sources_.push_back(std::move(source));
}

const GgufValue* HfCheckpoint::find(std::string_view key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::vector<std::string> HfCheckpoint::keys() const {
  std::vector<std::string> out;
  out.reserve(kv_.size());
  for (const auto& kv : kv_) out.push_back(kv.first);
  return out;
}

const TensorInfo* HfCheckpoint::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

int64_t HfCheckpoint::index_of(const TensorInfo& info) const {
  const auto it = tensor_index_.find(info.name);
  if (it == tensor_index_.end()) return -1;
  const TensorInfo& mine = tensors_[it->second];
  if (mine.dims != info.dims || mine.type != info.type || mine.offset != info.offset ||
      mine.size_bytes != info.size_bytes) {
    return -1;
  }
  return static_cast<int64_t>(it->second);
}

std::string HfCheckpoint::source_name(const TensorInfo& info) const {
  const int64_t i = index_of(info);
  if (i < 0) return "";
  const Source& s = sources_[static_cast<size_t>(i)];
  return s.shard < 0 ? "" : shards_[static_cast<size_t>(s.shard)].tensors()[s.tensor].name;
}

std::span<const uint8_t> HfCheckpoint::tensor_bytes(const TensorInfo& info) const {
  const int64_t i = index_of(info);
  if (i < 0) return {};
  const Source& s = sources_[static_cast<size_t>(i)];
  if (s.permute_heads > 0) return {};  // the stored rows are not the GGUF layout
  if (s.shard < 0) return {reinterpret_cast<const uint8_t*>(s.owned.data()), s.owned.size() * sizeof(float)};
  const SafetensorsFile& shard = shards_[static_cast<size_t>(s.shard)];
  return shard.data(shard.tensors()[s.tensor]);
}

Result<std::vector<float>> HfCheckpoint::dequantize(const TensorInfo& info) const {
  const int64_t i = index_of(info);
  if (i < 0) return Status::invalid(path_ + ": tensor '" + info.name + "' is not one of this checkpoint's tensors");
  const Source& s = sources_[static_cast<size_t>(i)];
  if (s.shard < 0) return s.owned;
  const SafetensorsFile& shard = shards_[static_cast<size_t>(s.shard)];
  Result<std::vector<float>> v = dequantize_bytes(info, shard.data(shard.tensors()[s.tensor]));
  if (!v || s.permute_heads == 0) return v;
  return permute_rows(*v, s.permute_heads, info.dims[0]);
}

}  // namespace lutq::io
