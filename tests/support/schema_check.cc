// schema_valid (schema_check.h).
#include "support/schema_check.h"

#include <algorithm>
#include <string>

namespace lutq::testing {

using OJson = nlohmann::ordered_json;

bool schema_valid(const OJson& v, const OJson& s, const OJson& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string r = s["$ref"];
    return schema_valid(v, r == "#" ? root : root.at(OJson::json_pointer(r.substr(1))), root);
  }
  if (s.contains("anyOf")) {
    bool any = false;
    for (const OJson& sub : s["anyOf"]) any = any || schema_valid(v, sub, root);
    if (!any) return false;
  }
  for (const OJson& sub : s.value("allOf", OJson::array())) {
    if (!schema_valid(v, sub, root)) return false;
  }
  if (s.contains("const") && v != s["const"]) return false;
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) return false;
  if (s.contains("type")) {
    const OJson types = s["type"].is_array() ? s["type"] : OJson::array({s["type"]});
    bool ok = false;
    for (const OJson& t : types) {
      const std::string n = t;
      ok = ok || (n == "integer" ? v.is_number_integer() : n == "number" ? v.is_number() : n == "string" ? v.is_string()
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
        if (!schema_valid(it.value(), props[it.key()], root)) return false;
      } else if (s.contains("additionalProperties") && !schema_valid(it.value(), s["additionalProperties"], root)) {
        return false;
      }
    }
  }
  if (v.is_array()) {
    if (v.size() < s.value("minItems", size_t{0}) || v.size() > s.value("maxItems", size_t{1} << 30)) return false;
    for (const OJson& x : v) {
      if (s.contains("items") && !schema_valid(x, s["items"], root)) return false;
    }
  }
  if (v.is_string()) {
    const std::string& str = v.get_ref<const std::string&>();
    const auto n = static_cast<size_t>(std::count_if(str.begin(), str.end(), [](char c) { return (c & 0xC0) != 0x80; }));
    if (n < s.value("minLength", size_t{0}) || n > s.value("maxLength", size_t{1} << 30)) return false;
  }
  return true;
}

}  // namespace lutq::testing
