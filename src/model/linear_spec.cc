#include "model/linear_spec.h"

#include <charconv>
#include <limits>

namespace lutq::model {
namespace {

constexpr std::array<const char*, kNumLinearRoles> kRoleNames = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
constexpr std::string_view kOutputPattern = "output";
constexpr float kDefaultInt8Threshold = 6.0f;

template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

bool matches(const LinearOverride& o, std::string_view tensor_name, std::optional<LinearRole> role) {
  if (role ? o.pattern == role_name(*role) : o.pattern == kOutputPattern) return true;
  if (glob_match(o.pattern, tensor_name)) return true;
  constexpr std::string_view kSuffix = ".weight";
  return tensor_name.ends_with(kSuffix) &&
         glob_match(o.pattern, tensor_name.substr(0, tensor_name.size() - kSuffix.size()));
}

}  // namespace

const char* role_name(LinearRole role) { return kRoleNames[static_cast<size_t>(role)]; }

Result<LinearRole> parse_role(std::string_view name) {
  for (int i = 0; i < kNumLinearRoles; ++i) {
    if (name == kRoleNames[static_cast<size_t>(i)]) return static_cast<LinearRole>(i);
  }
  return Status::invalid("unknown linear layer type '" + std::string(name) +
                         "' (expected attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up or ffn_down)");
}

Status apply_quantizer(std::string_view name, LinearChoice& choice) {
  if (name == "gptq" || name == "gptq-bcq") {
    choice.gptq = true;
    choice.flexround = false;
    choice.quant.method = name == "gptq" ? quant::Method::kRtn : quant::Method::kAlternating;
    return Status::ok();
  }
  if (name == "flexround") {
    choice.gptq = false;
    choice.flexround = true;
    choice.quant.method = quant::Method::kRtn;
    return Status::ok();
  }
  Result<quant::Method> m = quant::parse_method(name);
  if (!m) return Status::invalid(m.status().message() + " (or gptq, gptq-bcq, flexround)");
  choice.gptq = false;
  choice.flexround = false;
  choice.quant.method = *m;
  return Status::ok();
}

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative matcher with one backtrack point (the last '*'): linear in practice, no recursion.
  size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

Result<LinearOverride> parse_override(std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return Status::invalid("override '" + std::string(text) + "': expected PATTERN=SETTINGS, e.g. ffn_down=q=4,g=64");
  }
  LinearOverride o;
  o.pattern = std::string(text.substr(0, eq));
  std::string_view rest = text.substr(eq + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto bad = [&](const std::string& why) {
      return Status::invalid("override '" + std::string(text) + "': '" + std::string(item) + "': " + why);
    };
    if (item == "dense") {
      o.dense = true;
      continue;
    }
    if (item == "int8") {
      o.int8_threshold = kDefaultInt8Threshold;
      continue;
    }
    const size_t ieq = item.find('=');
    if (ieq == std::string_view::npos) {
      return bad("expected dense, q=N, g=N, method=M, orientation=oc|ic, offset=0|1, scale_bits=B or clip=0|1");
    }
    const std::string_view key = item.substr(0, ieq);
    const std::string_view val = item.substr(ieq + 1);
    if (key == "q" || key == "bits") {
      const std::optional<int> q = parse_number<int>(val);
      if (!q || *q < 1 || *q > format::kMaxBits) return bad("bits must be 1..8");
      o.q = *q;
    } else if (key == "g" || key == "group") {
      const std::optional<int64_t> g = parse_number<int64_t>(val);
      if (!g || *g < 1) return bad("group must be a positive integer");
      o.g = *g;
    } else if (key == "method") {
      LinearChoice probe;
      if (Status st = apply_quantizer(val, probe); !st) return bad(st.message());
      o.quantizer = std::string(val);
    } else if (key == "orientation") {
      if (val == "oc") {
        o.orientation = format::Orientation::kPerOC;
        o.adadim = false;
      } else if (val == "ic") {
        o.orientation = format::Orientation::kPerIC;
        o.adadim = false;
      } else if (val == "auto") {
        o.adadim = true;
      } else {
        return bad("orientation must be oc, ic or auto");
      }
    } else if (key == "int8") {
      if (val == "plain") {
        o.int8_threshold = std::numeric_limits<float>::infinity();
      } else {
        const std::optional<float> t = parse_number<float>(val);
        if (!t || !(*t > 0.0f)) return bad("int8 threshold must be a positive number or 'plain'");
        o.int8_threshold = *t;
      }
    } else if (key == "offset") {
      if (val != "0" && val != "1") return bad("offset must be 0 or 1");
      o.offset = val == "1";
    } else if (key == "clip") {
      if (val != "0" && val != "1") return bad("clip must be 0 or 1");
      o.clip_search = val == "1";
    } else if (key == "scale_bits") {
      const std::optional<int> b = parse_number<int>(val);
      if (!b || (*b != 0 && (*b < 4 || *b > 8))) return bad("scale_bits must be 0 (fp16) or 4..8");
      o.scale_bits = *b;
    } else {
      return bad("unknown setting '" + std::string(key) + "'");
    }
  }
  return o;
}

bool LinearSpec::any_quantized() const {
  if (output.quantize) return true;
  for (const LinearChoice& c : roles) {
    if (c.quantize) return true;
  }
  for (const LinearOverride& o : overrides) {
    if (!o.dense) return true;
  }
  return false;
}

LinearChoice LinearSpec::resolve(std::string_view tensor_name, std::optional<LinearRole> role) const {
  LinearChoice c = role ? (*this)[*role] : output;
  for (const LinearOverride& o : overrides) {
    if (!matches(o, tensor_name, role)) continue;
    if (o.dense) {
      c.quantize = false;
      continue;
    }
    // An override that sets any quantization field quantizes the layer, starting from the
    // block defaults when the base choice was dense.
    if (!c.quantize) {
      const LinearChoice& base = roles[0];
      c.quant = base.quantize ? base.quant : quant::QuantOptions{};
      c.isa = base.isa;
      c.precision = base.precision;
    }
    c.quantize = true;
    if (o.q) c.quant.cfg.q = *o.q;
    if (o.g) c.quant.cfg.g = *o.g;
    if (o.quantizer) (void)apply_quantizer(*o.quantizer, c);  // validated when parsed
    if (o.orientation) c.quant.cfg.orientation = *o.orientation;
    if (o.adadim) c.adadim = *o.adadim;
    if (o.offset) c.quant.cfg.has_offset = *o.offset;
    if (o.scale_bits) c.quant.scale_bits = *o.scale_bits;
    if (o.clip_search) c.clip_search = *o.clip_search;
    if (o.int8_threshold) {
      c.int8 = true;
      c.int8_threshold = *o.int8_threshold;
    } else if (o.q || o.g || o.quantizer || o.orientation || o.adadim || o.offset || o.scale_bits || o.clip_search) {
      c.int8 = false;  // a BCQ setting after an int8 one
    }
  }
  return c;
}

LinearSpec LinearSpec::quantized(const quant::QuantOptions& opt, kernels::Isa isa, kernels::Precision precision) {
  LinearSpec spec;
  for (LinearChoice& c : spec.roles) {
    c.quantize = true;
    c.quant = opt;
    c.isa = isa;
    c.precision = precision;
  }
  // The head (the largest single matrix of a small model, read every token) goes to 8-bit
  // uniform codes: near-lossless, a quarter of its fp32 bytes.
  spec.output.quantize = true;
  spec.output.quant.method = quant::Method::kRtn;
  spec.output.quant.cfg = format::BcqConfig{8, opt.cfg.g, format::Orientation::kPerOC, true};
  spec.output.isa = isa;
  spec.output.precision = precision;
  return spec;
}

}  // namespace lutq::model
