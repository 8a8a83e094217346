// schema_valid (schema_check.h).
#include "support/schema_check.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace lutq::testing {

using OJson = nlohmann::ordered_json;

namespace {

bool valid(const OJson& v, const OJson& s, const OJson& root, int depth);

bool is_integer(const OJson& v) {
  return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
}

bool valid(const OJson& v, const OJson& s, const OJson& root, int depth) {
  if (depth > 512) return false;  // a $ref cycle that consumes nothing (anyOf [{"$ref": "#"}, ...])
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string r = s["$ref"];
    return valid(v, r == "#" ? root : root.at(OJson::json_pointer(r.substr(1))), root, depth + 1);
  }
  if (s.contains("anyOf")) {
    bool any = false;
    for (const OJson& sub : s["anyOf"]) any = any || valid(v, sub, root, depth + 1);
    if (!any) return false;
  }
  for (const OJson& sub : s.value("allOf", OJson::array())) {
    if (!valid(v, sub, root, depth + 1)) return false;
  }
  if (s.contains("const") && v != s["const"]) return false;
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) return false;
  if (s.contains("type")) {
    const OJson types = s["type"].is_array() ? s["type"] : OJson::array({s["type"]});
    bool ok = false;
    for (const OJson& t : types) {
      const std::string n = t;
      ok = ok || (n == "integer" ? is_integer(v) : n == "number" ? v.is_number() : n == "string" ? v.is_string()
                  : n == "boolean" ? v.is_boolean() : n == "null" ? v.is_null() : n == "object" ? v.is_object()
                  : v.is_array());
    }
    if (!ok) return false;
  }
  if (v.is_object()) {
    const OJson props = s.value("properties", OJson::object());
    for (const OJson& r : s.value("required", OJson::array())) {
      if (!v.contains(r.get<std::string>())) return false;
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (props.contains(it.key())) {
        if (!valid(it.value(), props[it.key()], root, depth + 1)) return false;
      } else if (s.contains("additionalProperties") && !valid(it.value(), s["additionalProperties"], root, depth + 1)) {
        return false;
      }
    }
  }
  if (v.is_array()) {
    if (v.size() < s.value("minItems", size_t{0}) || v.size() > s.value("maxItems", size_t{1} << 30)) return false;
    for (const OJson& x : v) {
      if (s.contains("items") && !valid(x, s["items"], root, depth + 1)) return false;
    }
  }
  if (v.is_string()) {
    const std::string& str = v.get_ref<const std::string&>();
    const auto n = static_cast<size_t>(std::count_if(str.begin(), str.end(), [](char c) { return (c & 0xC0) != 0x80; }));
    if (n < s.value("minLength", size_t{0}) || n > s.value("maxLength", size_t{1} << 30)) return false;
  }
  return true;
}

}  // namespace

bool schema_valid(const OJson& v, const OJson& s, const OJson& root) { return valid(v, s, root, 0); }

}  // namespace lutq::testing
