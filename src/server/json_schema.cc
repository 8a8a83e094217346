// SchemaCompiler: JSON Schema subset → Grammar (json_schema.h).
#include "server/json_schema.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

namespace lutq::server {
namespace {

using Seq = std::vector<GElem>;

// Assertions this subset cannot enforce: refused rather than ignored.
constexpr std::array<std::string_view, 29> kUnsupported = {
    "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "oneOf", "not", "if",
    "then", "else", "prefixItems", "uniqueItems", "contains", "minContains", "maxContains", "minProperties",
    "maxProperties", "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems", "$dynamicRef", "$recursiveRef",
    "contentSchema"};

// Keywords that shape the value: a $ref, allOf or anyOf beside them is refused (not merged).
constexpr std::array<std::string_view, 13> kStructural = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength",
    "maxLength", "enum", "const", "anyOf", "allOf"};

bool has(const OJson& s, std::string_view key) { return s.contains(key); }

std::string dump(const OJson& v) { return v.dump(-1, ' ', false, OJson::error_handler_t::replace); }

// Whether a JSON value has the JSON Schema type `t`.
bool has_type(const OJson& v, const std::string& t) {
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  if (t == "number") return v.is_number();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  return false;
}

}  // namespace

bool SchemaCompiler::fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
  return false;
}

uint32_t SchemaCompiler::rule(std::initializer_list<Seq> alts) {
  const uint32_t r = g_.add_rule();
  for (const Seq& a : alts) g_.add_alt(r, a);
  return r;
}

std::optional<uint32_t> SchemaCompiler::compile(const OJson& schema, const OJson& root) {
  root_ = &root;
  refs_.clear();
  error_.clear();
  std::optional<uint32_t> r = value(schema, 0);
  if (r && g_.size() > Grammar::kMaxElems) {
    r = std::nullopt;
    fail("the schema is too large");
  }
  if (r && !g_.productive(*r)) {
    r = std::nullopt;
    fail("the schema admits no finite JSON value (a $ref that requires itself?)");
  }
  return r;
}

bool SchemaCompiler::check_keywords(const OJson& s) {
  for (auto it = s.begin(); it != s.end(); ++it) {
    if (std::find(kUnsupported.begin(), kUnsupported.end(), it.key()) != kUnsupported.end()) {
      return fail("the JSON Schema keyword '" + it.key() + "' is not supported");
    }
  }
  if (const auto t = s.find("type"); t != s.end()) {
    const bool ok = t->is_string() || (t->is_array() && !t->empty() &&
                                       std::all_of(t->begin(), t->end(), [](const OJson& x) { return x.is_string(); }));
    if (!ok) return fail("'type' must be a string or a non-empty array of strings");
  }
  return true;
}

std::optional<uint32_t> SchemaCompiler::value(const OJson& s, int depth) {
  if (depth > kMaxDepth) return fail("the schema nests deeper than " + std::to_string(kMaxDepth) + " levels"), std::nullopt;
  if (g_.size() > Grammar::kMaxElems) return fail("the schema is too large"), std::nullopt;
  if (s.is_boolean()) {
    if (s.get<bool>()) return any_value();
    return fail("the schema false admits no value"), std::nullopt;
  }
  if (!s.is_object()) return fail("a schema must be an object or a boolean, got " + dump(s).substr(0, 40)), std::nullopt;
  if (!check_keywords(s)) return std::nullopt;
  for (const char* combinator : {"$ref", "allOf", "anyOf"}) {
    if (!has(s, combinator)) continue;
    for (const std::string_view k : kStructural) {
      if (k != combinator && has(s, k)) {
        return fail(std::string("'") + combinator + "' beside '" + std::string(k) + "' is not supported"), std::nullopt;
      }
    }
  }
  if (const auto r = s.find("$ref"); r != s.end()) {
    if (!r->is_string()) return fail("'$ref' must be a string"), std::nullopt;
    return ref(r->get<std::string>(), depth);
  }
  for (const char* combinator : {"allOf", "anyOf"}) {
    const auto c = s.find(combinator);
    if (c == s.end()) continue;
    if (!c->is_array() || c->empty()) return fail(std::string("'") + combinator + "' must be a non-empty array"), std::nullopt;
    if (std::string_view(combinator) == "allOf" && c->size() != 1) {
      return fail("'allOf' with more than one schema is not supported"), std::nullopt;
    }
    const uint32_t r = g_.add_rule();
    for (const OJson& sub : *c) {
      const std::optional<uint32_t> v = value(sub, depth + 1);
      if (!v) return std::nullopt;
      g_.add_alt(r, {Grammar::call(*v)});
    }
    return r;
  }
  if (const auto c = s.find("const"); c != s.end()) return literals(s, OJson::array({*c}));
  if (const auto e = s.find("enum"); e != s.end()) {
    if (!e->is_array() || e->empty()) return fail("'enum' must be a non-empty array"), std::nullopt;
    return literals(s, *e);
  }
  const auto t = s.find("type");
  if (t == s.end()) {
    if (has(s, "properties") || has(s, "required") || has(s, "additionalProperties")) return object(s, depth);
    if (has(s, "items") || has(s, "minItems") || has(s, "maxItems")) return array(s, depth);
    if (has(s, "minLength") || has(s, "maxLength")) return string(s);
    return any_value();
  }
  if (t->is_string()) return by_type(s, t->get<std::string>(), depth);
  const uint32_t r = g_.add_rule();
  for (const OJson& name : *t) {
    const std::optional<uint32_t> v = by_type(s, name.get<std::string>(), depth);
    if (!v) return std::nullopt;
    g_.add_alt(r, {Grammar::call(*v)});
  }
  return r;
}

std::optional<uint32_t> SchemaCompiler::by_type(const OJson& s, const std::string& type, int depth) {
  if (type == "object") return object(s, depth);
  if (type == "array") return array(s, depth);
  if (type == "string") return string(s);
  if (type == "number") return number(false);
  if (type == "integer") return number(true);
  Seq t, f, n;
  if (type == "boolean") {
    g_.literal(t, "true");
    g_.literal(f, "false");
    return rule({t, f});
  }
  if (type == "null") {
    g_.literal(n, "null");
    return rule({n});
  }
  return fail("unknown type '" + type + "'"), std::nullopt;
}

std::optional<uint32_t> SchemaCompiler::ref(const std::string& target, int depth) {
  if (const auto it = refs_.find(target); it != refs_.end()) return it->second;
  const OJson* to = nullptr;
  if (target == "#") {
    to = root_;
  } else if (target.starts_with("#/")) {
    try {
      to = &root_->at(OJson::json_pointer(target.substr(1)));
    } catch (const OJson::exception&) {
      return fail("'$ref' '" + target + "' does not resolve in the schema"), std::nullopt;
    }
  } else {
    return fail("only local '$ref's (\"#/$defs/NAME\", \"#/definitions/NAME\") are supported, got '" + target + "'"),
           std::nullopt;
  }
  const uint32_t r = g_.add_rule();
  refs_.emplace(target, r);  // before the body: a recursive $ref calls this rule
  const std::optional<uint32_t> v = value(*to, depth + 1);
  if (!v) return std::nullopt;
  g_.add_alt(r, {Grammar::call(*v)});
  return r;
}

std::optional<uint32_t> SchemaCompiler::literals(const OJson& s, const OJson& values) {
  // The literal values are emitted as they are: a keyword that would constrain them further is
  // refused rather than left unchecked ({"const":"abc","maxLength":1} has no valid value).
  for (const char* key : {"properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                          "minLength", "maxLength"}) {
    if (has(s, key)) return fail(std::string("'enum' / 'const' beside '") + key + "' is not supported"), std::nullopt;
  }
  const auto t = s.find("type");
  std::vector<std::string> types;
  if (t != s.end()) {
    if (t->is_string()) {
      types.push_back(t->get<std::string>());
    } else {
      for (const OJson& x : *t) types.push_back(x.get<std::string>());
    }
  }
  const uint32_t r = g_.add_rule();
  bool any = false;
  for (const OJson& v : values) {
    if (!types.empty() && std::none_of(types.begin(), types.end(), [&](const std::string& x) { return has_type(v, x); })) {
      continue;
    }
    Seq seq;
    g_.literal(seq, dump(v));
    g_.add_alt(r, seq);
    any = true;
  }
  if (!any) return fail("no 'enum' / 'const' value has the schema's 'type'"), std::nullopt;
  return r;
}

std::optional<int64_t> SchemaCompiler::count(const OJson& s, const char* key, int64_t fallback) {
  const auto it = s.find(key);
  if (it == s.end()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > kMaxCount) {
    return fail(std::string("'") + key + "' must be an integer from 0 to " + std::to_string(kMaxCount)), std::nullopt;
  }
  return it->get<int64_t>();
}

// first · next^(k-1) for lo <= k <= hi (hi < 0: no bound), or nothing when lo == 0.
std::optional<uint32_t> SchemaCompiler::counted(uint32_t first, uint32_t next, int64_t lo, int64_t hi) {
  if (hi >= 0 && lo > hi) return fail("a minimum count is above its maximum"), std::nullopt;
  if (hi == 0) return rule({{}});
  uint32_t tail;  // T_k: what may follow the k-th unit
  int64_t k;
  if (hi < 0) {
    tail = g_.add_rule();
    g_.add_alt(tail, {});
    g_.add_alt(tail, {Grammar::call(next), Grammar::call(tail)});
    k = std::max<int64_t>(lo, 1);
  } else {
    tail = rule({{}});
    k = hi;
  }
  for (--k; k >= 1; --k) {
    const Seq more = {Grammar::call(next), Grammar::call(tail)};
    tail = k >= lo ? rule({{}, more}) : rule({more});
  }
  const Seq some = {Grammar::call(first), Grammar::call(tail)};
  return lo == 0 ? rule({{}, some}) : rule({some});
}

std::optional<uint32_t> SchemaCompiler::object(const OJson& s, int depth) {
  const auto props = s.find("properties");
  if (props != s.end() && !props->is_object()) return fail("'properties' must be an object"), std::nullopt;
  if (props != s.end() && !props->empty()) return properties(s, depth);
  const auto req = s.find("required");
  if (req != s.end() && !(req->is_array() && req->empty())) {
    return fail("'required' names properties that 'properties' does not declare"), std::nullopt;
  }
  const auto add = s.find("additionalProperties");
  const uint32_t sp = ws();
  const GElem open = g_.byte('{'), close = g_.byte('}');
  if (add != s.end() && add->is_boolean() && !add->get<bool>()) return rule({{open, Grammar::call(sp), close}});
  if (add == s.end() || (add->is_boolean() && add->get<bool>())) {
    any_value();  // defines "object"
    return shared_.at("object");
  }
  // A map: string keys, values of the additionalProperties schema.
  const std::optional<uint32_t> v = value(*add, depth + 1);
  if (!v) return std::nullopt;
  const uint32_t kv = rule({{Grammar::call(any_string()), Grammar::call(sp), g_.byte(':'), Grammar::call(sp),
                             Grammar::call(*v), Grammar::call(sp)}});
  const uint32_t more = rule({{g_.byte(','), Grammar::call(sp), Grammar::call(kv)}});
  const std::optional<uint32_t> body = counted(kv, more, 0, -1);
  if (!body) return std::nullopt;
  return rule({{open, Grammar::call(sp), Grammar::call(*body), close}});
}

// Declared properties in the schema's order, optional ones skippable: F_i / N_i are "properties
// i.. with none / some already written" (N_i writes its comma).
std::optional<uint32_t> SchemaCompiler::properties(const OJson& s, int depth) {
  const OJson& props = s.at("properties");
  std::vector<std::string> required;
  if (const auto req = s.find("required"); req != s.end()) {
    if (!req->is_array()) return fail("'required' must be an array of strings"), std::nullopt;
    for (const OJson& name : *req) {
      if (!name.is_string()) return fail("'required' must be an array of strings"), std::nullopt;
      if (!props.contains(name.get<std::string>())) {
        return fail("the required property '" + name.get<std::string>() + "' is not in 'properties'"), std::nullopt;
      }
      required.push_back(name.get<std::string>());
    }
  }
  const uint32_t sp = ws();
  std::vector<uint32_t> members;
  std::vector<bool> skippable;
  for (auto it = props.begin(); it != props.end(); ++it) {
    const std::optional<uint32_t> v = value(it.value(), depth + 1);
    if (!v) return std::nullopt;
    Seq m;
    g_.literal(m, dump(OJson(it.key())));
    m.insert(m.end(), {Grammar::call(sp), g_.byte(':'), Grammar::call(sp), Grammar::call(*v), Grammar::call(sp)});
    members.push_back(rule({m}));
    skippable.push_back(std::find(required.begin(), required.end(), it.key()) == required.end());
  }
  uint32_t f = rule({{}});
  uint32_t n = f;
  for (size_t i = members.size(); i-- > 0;) {
    const uint32_t ni = g_.add_rule(), fi = g_.add_rule();
    g_.add_alt(ni, {g_.byte(','), Grammar::call(sp), Grammar::call(members[i]), Grammar::call(n)});
    g_.add_alt(fi, {Grammar::call(members[i]), Grammar::call(n)});
    if (skippable[i]) {
      g_.add_alt(ni, {Grammar::call(n)});
      g_.add_alt(fi, {Grammar::call(f)});
    }
    n = ni;
    f = fi;
  }
  return rule({{g_.byte('{'), Grammar::call(sp), Grammar::call(f), g_.byte('}')}});
}

std::optional<uint32_t> SchemaCompiler::array(const OJson& s, int depth) {
  const std::optional<int64_t> lo = count(s, "minItems", 0), hi0 = count(s, "maxItems", -1);
  if (!lo || !hi0) return std::nullopt;
  int64_t hi = *hi0;
  const auto items = s.find("items");
  std::optional<uint32_t> item;
  if (items == s.end() || (items->is_boolean() && items->get<bool>())) {
    item = any_value();
  } else if (items->is_boolean()) {
    hi = 0;  // items: false: only the empty array
    item = any_value();
  } else {
    item = value(*items, depth + 1);
  }
  if (!item) return std::nullopt;
  const uint32_t sp = ws();
  const uint32_t first = rule({{Grammar::call(*item), Grammar::call(sp)}});
  const uint32_t next = rule({{g_.byte(','), Grammar::call(sp), Grammar::call(*item), Grammar::call(sp)}});
  const std::optional<uint32_t> body = counted(first, next, *lo, hi);
  if (!body) return std::nullopt;
  return rule({{g_.byte('['), Grammar::call(sp), Grammar::call(*body), g_.byte(']')}});
}

std::optional<uint32_t> SchemaCompiler::string(const OJson& s) {
  if (!has(s, "minLength") && !has(s, "maxLength")) return any_string();
  const std::optional<int64_t> lo = count(s, "minLength", 0), hi = count(s, "maxLength", -1);
  if (!lo || !hi) return std::nullopt;
  const uint32_t c = str_char();
  const std::optional<uint32_t> body = counted(c, c, *lo, *hi);
  if (!body) return std::nullopt;
  return rule({{g_.byte('"'), Grammar::call(*body), g_.byte('"')}});
}

// ---- shared rules ----

uint32_t SchemaCompiler::ws() {
  if (const auto it = shared_.find("ws"); it != shared_.end()) return it->second;
  Grammar::ByteSet space{};
  for (const unsigned char c : {' ', '\t', '\n', '\r'}) space[c >> 6] |= uint64_t{1} << (c & 63);
  uint32_t w = rule({{}});
  for (int k = 0; k < kMaxSpaces; ++k) w = rule({{}, {g_.bytes(space), Grammar::call(w)}});
  return shared_["ws"] = w;
}

uint32_t SchemaCompiler::digits(int n) {
  std::string key = std::to_string(n);
  key.insert(key.begin(), 'd');
  if (const auto it = shared_.find(key); it != shared_.end()) return it->second;
  const uint32_t r = n == 0 ? rule({{}}) : rule({{}, {g_.range('0', '9'), Grammar::call(digits(n - 1))}});
  return shared_[key] = r;
}

// JSON numbers with at most JsonAcceptor's digits (every one fits a double).
uint32_t SchemaCompiler::number(bool integer) {
  const std::string key = integer ? "integer" : "number";
  if (const auto it = shared_.find(key); it != shared_.end()) return it->second;
  constexpr int kDigits = JsonAcceptor::kMaxDigits;
  const GElem d = g_.range('0', '9');
  const uint32_t whole = rule({{g_.byte('0')}, {g_.range('1', '9'), Grammar::call(digits(kDigits - 1))}});
  uint32_t r;
  if (integer) {
    r = rule({{Grammar::call(whole)}, {g_.byte('-'), Grammar::call(whole)}});
  } else {
    const uint32_t frac = rule({{}, {g_.byte('.'), d, Grammar::call(digits(kDigits - 1))}});
    const GElem e = g_.bytes([] {
      Grammar::ByteSet set{};
      for (const unsigned char c : {'e', 'E'}) set[c >> 6] |= uint64_t{1} << (c & 63);
      return set;
    }());
    const uint32_t ex = rule({{}, {e, d, Grammar::call(digits(1))}, {e, g_.byte('-'), d, Grammar::call(digits(1))},
                              {e, g_.byte('+'), d, Grammar::call(digits(1))}});
    const Seq tail = {Grammar::call(whole), Grammar::call(frac), Grammar::call(ex)};
    Seq neg = {g_.byte('-')};
    neg.insert(neg.end(), tail.begin(), tail.end());
    r = rule({tail, neg});
  }
  return shared_[key] = r;
}

// One character of a JSON string: printable ASCII but " and \, an escape (\u of a surrogate
// excluded: a lone one is refused by parsers), or one well-formed UTF-8 sequence (RFC 3629).
uint32_t SchemaCompiler::str_char() {
  if (const auto it = shared_.find("char"); it != shared_.end()) return it->second;
  Grammar::ByteSet plain{};
  for (unsigned c = 0x20; c < 0x80; ++c) {
    if (c != '"' && c != '\\') plain[c >> 6] |= uint64_t{1} << (c & 63);
  }
  Grammar::ByteSet esc{}, e3{}, hex{}, hex_ns{};  // hex_ns: a first \u digit that is not d/D
  for (const unsigned char c : std::string_view("\"\\/bfnrt")) esc[c >> 6] |= uint64_t{1} << (c & 63);
  for (unsigned c = 0xE1; c <= 0xEF; ++c) {
    if (c != 0xED) e3[c >> 6] |= uint64_t{1} << (c & 63);
  }
  for (const unsigned char c : std::string_view("0123456789abcdefABCDEF")) {
    hex[c >> 6] |= uint64_t{1} << (c & 63);
    if (c != 'd' && c != 'D') hex_ns[c >> 6] |= uint64_t{1} << (c & 63);
  }
  const GElem cont = g_.range(0x80, 0xBF), h = g_.bytes(hex), bs = g_.byte('\\'), u = g_.byte('u');
  Grammar::ByteSet dd{};
  dd['d' >> 6] |= uint64_t{1} << ('d' & 63);
  dd['D' >> 6] |= uint64_t{1} << ('D' & 63);
  const uint32_t r = rule({{g_.bytes(plain)},
                           {bs, g_.bytes(esc)},
                           {bs, u, g_.bytes(hex_ns), h, h, h},
                           {bs, u, g_.bytes(dd), g_.range('0', '7'), h, h},
                           {g_.range(0xC2, 0xDF), cont},
                           {g_.byte(0xE0), g_.range(0xA0, 0xBF), cont},
                           {g_.bytes(e3), cont, cont},
                           {g_.byte(0xED), g_.range(0x80, 0x9F), cont},
                           {g_.byte(0xF0), g_.range(0x90, 0xBF), cont, cont},
                           {g_.range(0xF1, 0xF3), cont, cont, cont},
                           {g_.byte(0xF4), g_.range(0x80, 0x8F), cont, cont}});
  return shared_["char"] = r;
}

uint32_t SchemaCompiler::any_string() {
  if (const auto it = shared_.find("string"); it != shared_.end()) return it->second;
  const uint32_t chars = g_.add_rule();
  g_.add_alt(chars, {});
  g_.add_alt(chars, {Grammar::call(str_char()), Grammar::call(chars)});
  return shared_["string"] = rule({{g_.byte('"'), Grammar::call(chars), g_.byte('"')}});
}

// Any JSON value (true / {} and unconstrained items or properties); also defines "object".
uint32_t SchemaCompiler::any_value() {
  if (const auto it = shared_.find("any"); it != shared_.end()) return it->second;
  const uint32_t v = g_.add_rule();
  shared_["any"] = v;
  const uint32_t sp = ws();
  const uint32_t kv = rule({{Grammar::call(any_string()), Grammar::call(sp), g_.byte(':'), Grammar::call(sp),
                             Grammar::call(v), Grammar::call(sp)}});
  const uint32_t kl = g_.add_rule();
  g_.add_alt(kl, {});
  g_.add_alt(kl, {g_.byte(','), Grammar::call(sp), Grammar::call(kv), Grammar::call(kl)});
  const uint32_t obj = rule({{g_.byte('{'), Grammar::call(sp), g_.byte('}')},
                             {g_.byte('{'), Grammar::call(sp), Grammar::call(kv), Grammar::call(kl), g_.byte('}')}});
  shared_["object"] = obj;
  const uint32_t vl = g_.add_rule();
  g_.add_alt(vl, {});
  g_.add_alt(vl, {g_.byte(','), Grammar::call(sp), Grammar::call(v), Grammar::call(sp), Grammar::call(vl)});
  const uint32_t arr = rule({{g_.byte('['), Grammar::call(sp), g_.byte(']')},
                             {g_.byte('['), Grammar::call(sp), Grammar::call(v), Grammar::call(sp), Grammar::call(vl),
                              g_.byte(']')}});
  Seq t, f, n;
  g_.literal(t, "true");
  g_.literal(f, "false");
  g_.literal(n, "null");
  for (const Seq& alt : {Seq{Grammar::call(obj)}, Seq{Grammar::call(arr)}, Seq{Grammar::call(any_string())},
                         Seq{Grammar::call(number(false))}, t, f, n}) {
    g_.add_alt(v, alt);
  }
  return v;
}

CompiledGrammar compile_json_schema(const OJson& schema) {
  auto g = std::make_shared<Grammar>();
  SchemaCompiler c(*g);
  const std::optional<uint32_t> r = c.compile(schema, schema);
  if (!r) return {nullptr, c.error()};
  g->set_root(*r);
  return {std::move(g), ""};
}

}  // namespace lutq::server
